// Reading NumPy's .npz archives without zlib: a ZIP directory reader, a DEFLATE decoder
// (RFC 1951), CRC-32 and SHA-256 (FIPS 180-4), and the .npy array header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moofa::detail {

// SHA-256 of a byte string, as 64 lowercase hex digits.
std::string sha256_hex(const std::string& data);
// CRC-32 (ISO-HDLC, the one ZIP stores).
uint32_t crc32(const uint8_t* data, std::size_t n);
// The raw DEFLATE stream `in` decoded; it must decode to exactly `size` bytes.
// Throws std::invalid_argument (message prefixed with `where`) on a corrupt stream.
std::vector<uint8_t> inflate(const uint8_t* in, std::size_t n, std::size_t size,
                             const std::string& where);

// The members of a ZIP archive (stored or deflated), read through its central directory.
class ZipReader {
 public:
  // `data` must outlive the reader. Throws std::invalid_argument naming `where`.
  ZipReader(const std::string& data, const std::string& where);
  bool has(const std::string& name) const;
  // A member's bytes (its CRC-32 checked).
  std::vector<uint8_t> read(const std::string& name) const;

 private:
  struct Entry {
    std::string name;
    uint16_t method = 0;
    uint32_t crc = 0;
    uint64_t compressed = 0, size = 0, offset = 0;
  };
  const Entry* find(const std::string& name) const;
  const std::string& data_;
  std::string where_;
  std::vector<Entry> entries_;
};

// A float array from a .npy file (any float32 / float64 layout NumPy writes, converted to
// row-major float32). `shape` is what the caller expects; a different one throws.
std::vector<float> read_npy_float(const std::vector<uint8_t>& npy,
                                  const std::vector<std::size_t>& shape, const std::string& where);

}  // namespace moofa::detail
