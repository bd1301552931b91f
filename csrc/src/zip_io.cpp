#include "zip_io.hpp"

#include <cstring>
#include <stdexcept>
#include <utility>

#include "require.hpp"

namespace moofa::detail {

// ---- SHA-256 (FIPS 180-4) -------------------------------------------------------------

namespace {

constexpr uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void sha256_block(uint32_t* h, const uint8_t* block) {
  uint32_t w[64];
  for (int t = 0; t < 16; ++t)
    w[t] = (uint32_t{block[4 * t]} << 24) | (uint32_t{block[4 * t + 1]} << 16) |
           (uint32_t{block[4 * t + 2]} << 8) | uint32_t{block[4 * t + 3]};
  for (int t = 16; t < 64; ++t) {
    const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int t = 0; t < 64; ++t) {
    const uint32_t t1 =
        k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kSha256K[t] + w[t];
    const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += k;
}

}  // namespace

std::string sha256_hex(const std::string& data) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const std::size_t n = data.size();
  std::size_t full = n / 64;
  for (std::size_t i = 0; i < full; ++i) sha256_block(h, p + 64 * i);
  // The tail: the rest, a 1 bit, zeros, and the length in bits (big-endian), in one or two
  // blocks.
  uint8_t tail[128] = {};
  const std::size_t rest = n - 64 * full;
  if (rest) std::memcpy(tail, p + 64 * full, rest);
  tail[rest] = 0x80;
  const std::size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(n) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  for (std::size_t off = 0; off < tail_len; off += 64) sha256_block(h, tail + off);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (uint32_t word : h)
    for (int shift = 28; shift >= 0; shift -= 4) out += hex[(word >> shift) & 0xF];
  return out;
}

// ---- CRC-32 ---------------------------------------------------------------------------

uint32_t crc32(const uint8_t* data, std::size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// ---- DEFLATE (RFC 1951) ---------------------------------------------------------------

namespace {

// Bits are read least significant first; reading past the end yields zeros and is
// detected by overrun().
class BitReader {
 public:
  BitReader(const uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  uint32_t peek(int k) {
    while (count_ < k) {
      const uint64_t byte = pos_ < n_ ? p_[pos_] : 0;
      ++pos_;
      buf_ |= byte << count_;
      count_ += 8;
    }
    return static_cast<uint32_t>(buf_ & ((uint64_t{1} << k) - 1));
  }
  void drop(int k) {
    buf_ >>= k;
    count_ -= k;
  }
  uint32_t get(int k) {
    if (k == 0) return 0;
    const uint32_t v = peek(k);
    drop(k);
    return v;
  }
  void align() { drop(count_ % 8); }
  bool overrun() const { return pos_ > n_ && (pos_ - n_) * 8 > static_cast<std::size_t>(count_); }

 private:
  const uint8_t* p_;
  std::size_t n_, pos_ = 0;
  uint64_t buf_ = 0;
  int count_ = 0;
};

constexpr int kMaxBits = 15;

// A canonical Huffman code as a lookup table indexed by the next max_len bits (bit
// reversed, as they arrive): each entry holds symbol << 4 | code length (0: no code).
class Huffman {
 public:
  Huffman(const uint8_t* lengths, int n, const char* what, const std::string& where) {
    int count[kMaxBits + 1] = {};
    for (int s = 0; s < n; ++s) ++count[lengths[s]];
    count[0] = 0;
    for (int len = 1; len <= kMaxBits; ++len)
      if (count[len]) max_len_ = len;
    require(max_len_ > 0, where + ": corrupt DEFLATE stream (empty " + what + " code)");
    int next[kMaxBits + 2] = {};
    int code = 0;
    for (int len = 1; len <= kMaxBits; ++len) {
      code = (code + count[len - 1]) << 1;
      next[len] = code;
      require(code + count[len] <= (1 << len),
              where + ": corrupt DEFLATE stream (over-subscribed " + what + " code)");
    }
    table_.assign(std::size_t{1} << max_len_, 0);
    for (int s = 0; s < n; ++s) {
      const int len = lengths[s];
      if (!len) continue;
      const uint32_t c = static_cast<uint32_t>(next[len]++);
      uint32_t rev = 0;
      for (int i = 0; i < len; ++i) rev |= ((c >> i) & 1u) << (len - 1 - i);
      for (uint32_t fill = rev; fill < table_.size(); fill += 1u << len)
        table_[fill] = static_cast<uint32_t>(s) << 4 | static_cast<uint32_t>(len);
    }
  }
  int decode(BitReader& bits, const std::string& where) const {
    const uint32_t entry = table_[bits.peek(max_len_)];
    const int len = static_cast<int>(entry & 15u);
    require(len > 0, where + ": corrupt DEFLATE stream (invalid code)");
    bits.drop(len);
    return static_cast<int>(entry >> 4);
  }

 private:
  int max_len_ = 0;
  std::vector<uint32_t> table_;
};

constexpr uint16_t kLengthBase[29] = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                      15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLengthExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                    33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                    1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                    6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
// Order in which a dynamic block lists the code lengths of its code-length code.
constexpr uint8_t kCodeLengthOrder[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                          11, 4,  12, 3, 13, 2, 14, 1, 15};

void inflate_block(BitReader& bits, const Huffman& lit, const Huffman& dist,
                   std::vector<uint8_t>& out, std::size_t size, const std::string& where) {
  const std::string corrupt = where + ": corrupt DEFLATE stream";
  for (;;) {
    const int sym = lit.decode(bits, where);
    if (sym < 256) {
      require(out.size() < size, corrupt + " (more data than the archive declares)");
      out.push_back(static_cast<uint8_t>(sym));
      continue;
    }
    if (sym == 256) return;
    require(sym <= 285, corrupt + " (invalid length code)");
    const std::size_t len = kLengthBase[sym - 257] + bits.get(kLengthExtra[sym - 257]);
    const int dsym = dist.decode(bits, where);
    require(dsym < 30, corrupt + " (invalid distance code)");
    const std::size_t d = kDistBase[dsym] + bits.get(kDistExtra[dsym]);
    require(d <= out.size(), corrupt + " (distance beyond the start)");
    require(len <= size - out.size(), corrupt + " (more data than the archive declares)");
    const std::size_t from = out.size() - d;
    for (std::size_t i = 0; i < len; ++i) out.push_back(out[from + i]);
    require(!bits.overrun(), corrupt + " (truncated)");
  }
}

}  // namespace

std::vector<uint8_t> inflate(const uint8_t* in, std::size_t n, std::size_t size,
                             const std::string& where) {
  const std::string corrupt = where + ": corrupt DEFLATE stream";
  BitReader bits(in, n);
  std::vector<uint8_t> out;
  out.reserve(size);
  bool last = false;
  while (!last) {
    last = bits.get(1) != 0;
    const uint32_t type = bits.get(2);
    if (type == 0) {  // stored
      bits.align();
      const uint32_t len = bits.get(16), nlen = bits.get(16);
      require((len ^ 0xFFFFu) == nlen, corrupt + " (stored block length check)");
      require(len <= size - out.size(), corrupt + " (more data than the archive declares)");
      for (uint32_t i = 0; i < len; ++i) out.push_back(static_cast<uint8_t>(bits.get(8)));
    } else if (type == 1) {  // fixed codes
      static const auto fixed = [] {
        uint8_t lengths[288 + 30];
        for (int s = 0; s < 288; ++s) lengths[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
        for (int s = 0; s < 30; ++s) lengths[288 + s] = 5;
        return std::array<Huffman, 2>{Huffman(lengths, 288, "literal", ""),
                                      Huffman(lengths + 288, 30, "distance", "")};
      }();
      inflate_block(bits, fixed[0], fixed[1], out, size, where);
    } else if (type == 2) {  // dynamic codes
      const int n_lit = static_cast<int>(bits.get(5)) + 257;
      const int n_dist = static_cast<int>(bits.get(5)) + 1;
      const int n_len = static_cast<int>(bits.get(4)) + 4;
      require(n_lit <= 286 && n_dist <= 30, corrupt + " (too many codes)");
      uint8_t cl_lengths[19] = {};
      for (int i = 0; i < n_len; ++i)
        cl_lengths[kCodeLengthOrder[i]] = static_cast<uint8_t>(bits.get(3));
      const Huffman cl(cl_lengths, 19, "code-length", where);
      uint8_t lengths[286 + 30] = {};
      int i = 0;
      while (i < n_lit + n_dist) {
        const int sym = cl.decode(bits, where);
        if (sym < 16) {
          lengths[i++] = static_cast<uint8_t>(sym);
          continue;
        }
        int repeat = 0;
        uint8_t value = 0;
        if (sym == 16) {
          require(i > 0, corrupt + " (repeat with no previous length)");
          value = lengths[i - 1];
          repeat = 3 + static_cast<int>(bits.get(2));
        } else if (sym == 17) {
          repeat = 3 + static_cast<int>(bits.get(3));
        } else {
          repeat = 11 + static_cast<int>(bits.get(7));
        }
        require(i + repeat <= n_lit + n_dist, corrupt + " (code lengths overflow)");
        while (repeat--) lengths[i++] = value;
      }
      require(lengths[256] != 0, corrupt + " (no end-of-block code)");
      const Huffman lit(lengths, n_lit, "literal", where);
      const Huffman dist(lengths + n_lit, n_dist, "distance", where);
      inflate_block(bits, lit, dist, out, size, where);
    } else {
      throw std::invalid_argument(corrupt + " (reserved block type)");
    }
    require(!bits.overrun(), corrupt + " (truncated)");
  }
  require(out.size() == size, corrupt + " (decodes to " + std::to_string(out.size()) +
                                  " bytes, the archive declares " + std::to_string(size) + ")");
  return out;
}

// ---- ZIP ------------------------------------------------------------------------------

namespace {

uint64_t le(const std::string& d, std::size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(d[at + i]);
  return v;
}

}  // namespace

ZipReader::ZipReader(const std::string& data, const std::string& where)
    : data_(data), where_(where) {
  const std::string bad = where + ": not a readable ZIP archive (truncated or corrupt?)";
  const std::size_t n = data.size();
  require(n >= 22, bad);
  // End of central directory: the last signature within the final 22 + 65535 bytes.
  std::size_t eocd = n - 22;
  const std::size_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
  while (le(data, eocd, 4) != 0x06054b50u) {
    require(eocd > lowest, bad);
    --eocd;
  }
  uint64_t count = le(data, eocd + 10, 2), offset = le(data, eocd + 16, 4);
  if ((count == 0xFFFF || offset == 0xFFFFFFFFu) && eocd >= 20 &&
      le(data, eocd - 20, 4) == 0x07064b50u) {  // ZIP64
    const uint64_t at = le(data, eocd - 20 + 8, 8);
    require(at <= n && n - at >= 56 && le(data, static_cast<std::size_t>(at), 4) == 0x06064b50u,
            bad);
    count = le(data, static_cast<std::size_t>(at) + 32, 8);
    offset = le(data, static_cast<std::size_t>(at) + 48, 8);
  }
  std::size_t p = static_cast<std::size_t>(offset);
  require(offset <= n, bad);
  for (uint64_t i = 0; i < count; ++i) {
    require(p + 46 <= n && le(data, p, 4) == 0x02014b50u, bad);
    Entry e;
    const uint64_t flags = le(data, p + 8, 2);
    require(!(flags & 1), where + ": encrypted ZIP members are not supported");
    e.method = static_cast<uint16_t>(le(data, p + 10, 2));
    e.crc = static_cast<uint32_t>(le(data, p + 16, 4));
    e.compressed = le(data, p + 20, 4);
    e.size = le(data, p + 24, 4);
    const std::size_t name_len = le(data, p + 28, 2), extra_len = le(data, p + 30, 2),
                      comment_len = le(data, p + 32, 2);
    e.offset = le(data, p + 42, 4);
    require(p + 46 + name_len + extra_len + comment_len <= n, bad);
    e.name = data.substr(p + 46, name_len);
    // ZIP64 extra field: the 64-bit sizes and offset whose 32-bit fields are all ones.
    for (std::size_t x = p + 46 + name_len, end = x + extra_len; x + 4 <= end;) {
      const uint64_t id = le(data, x, 2), len = le(data, x + 2, 2);
      require(x + 4 + len <= end, bad);
      if (id == 0x0001) {
        std::size_t f = x + 4;
        auto wide = [&](uint64_t& field) {
          if (field != 0xFFFFFFFFu) return;
          require(f + 8 <= x + 4 + len, bad);
          field = le(data, f, 8);
          f += 8;
        };
        wide(e.size);
        wide(e.compressed);
        wide(e.offset);
      }
      x += 4 + static_cast<std::size_t>(len);
    }
    entries_.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
}

const ZipReader::Entry* ZipReader::find(const std::string& name) const {
  for (const Entry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

bool ZipReader::has(const std::string& name) const { return find(name) != nullptr; }

std::vector<uint8_t> ZipReader::read(const std::string& name) const {
  const std::string bad = where_ + ": member " + name + " is truncated or corrupt";
  const Entry* e = find(name);
  require(e != nullptr, where_ + ": no member " + name);
  const std::size_t n = data_.size();
  require(e->offset <= n && n - e->offset >= 30 &&
              le(data_, static_cast<std::size_t>(e->offset), 4) == 0x04034b50u,
          bad);
  const std::size_t at = static_cast<std::size_t>(e->offset);
  const uint64_t start = at + 30 + le(data_, at + 26, 2) + le(data_, at + 28, 2);
  require(start <= n && e->compressed <= n - start, bad);
  const auto* src = reinterpret_cast<const uint8_t*>(data_.data()) + start;
  std::vector<uint8_t> out;
  if (e->method == 0) {
    require(e->compressed == e->size, bad);
    out.assign(src, src + e->compressed);
  } else if (e->method == 8) {
    // DEFLATE expands by at most 1032:1: a larger declared size is a corrupt header (and
    // must not reserve memory).
    require(e->size <= e->compressed * 1032 + 1024, bad);
    out = inflate(src, static_cast<std::size_t>(e->compressed), static_cast<std::size_t>(e->size),
                  where_ + ": member " + name);
  } else {
    throw std::invalid_argument(where_ + ": member " + name + " uses ZIP method " +
                                std::to_string(e->method) +
                                "; only stored (0) and deflate (8) are read");
  }
  require(crc32(out.data(), out.size()) == e->crc,
          where_ + ": member " + name + " fails its CRC-32 check");
  return out;
}

// ---- .npy -----------------------------------------------------------------------------

namespace {

// The text after `'key':` in a .npy header dict, spaces skipped.
std::size_t header_value(const std::string& h, const std::string& key, const std::string& where) {
  const std::size_t k = h.find("'" + key + "'");
  require(k != std::string::npos, where + ": .npy header has no '" + key + "'");
  std::size_t p = h.find(':', k);
  require(p != std::string::npos, where + ": bad .npy header");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  return p;
}

}  // namespace

std::vector<float> read_npy_float(const std::vector<uint8_t>& npy,
                                  const std::vector<std::size_t>& shape, const std::string& where) {
  static const char magic[] = "\x93NUMPY";
  require(npy.size() >= 10 && std::memcmp(npy.data(), magic, 6) == 0, where + ": not a .npy array");
  const int major = npy[6];
  require(major >= 1 && major <= 3,
          where + ": .npy version " + std::to_string(major) + " is not supported (1, 2 or 3)");
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = npy[8] | static_cast<std::size_t>(npy[9]) << 8;
    start = 10;
  } else {
    require(npy.size() >= 12, where + ": truncated .npy header");
    header_len = npy[8] | static_cast<std::size_t>(npy[9]) << 8 |
                 static_cast<std::size_t>(npy[10]) << 16 | static_cast<std::size_t>(npy[11]) << 24;
    start = 12;
  }
  require(header_len <= npy.size() - start, where + ": truncated .npy header");
  const std::string h(npy.begin() + static_cast<std::ptrdiff_t>(start),
                      npy.begin() + static_cast<std::ptrdiff_t>(start + header_len));

  std::size_t p = header_value(h, "descr", where);
  const std::size_t q = h.find('\'', p + 1);
  require(p < h.size() && h[p] == '\'' && q != std::string::npos, where + ": bad .npy descr");
  const std::string descr = h.substr(p + 1, q - p - 1);
  require(descr == "<f4" || descr == ">f4" || descr == "<f8" || descr == ">f8",
          where + ": dtype " + descr + " is not supported (float32 or float64)");
  const bool big = descr[0] == '>';
  const std::size_t item = descr[2] == '4' ? 4 : 8;

  p = header_value(h, "fortran_order", where);
  const bool fortran = h.compare(p, 4, "True") == 0;
  require(fortran || h.compare(p, 5, "False") == 0, where + ": bad .npy fortran_order");

  p = header_value(h, "shape", where);
  require(p < h.size() && h[p] == '(', where + ": bad .npy shape");
  std::vector<std::size_t> got;
  for (++p; p < h.size() && h[p] != ')';) {
    if (h[p] == ' ' || h[p] == ',') {
      ++p;
      continue;
    }
    require(h[p] >= '0' && h[p] <= '9', where + ": bad .npy shape");
    std::size_t v = 0;
    for (; p < h.size() && h[p] >= '0' && h[p] <= '9'; ++p) {
      require(v < (std::size_t{1} << 40), where + ": .npy shape too large");
      v = v * 10 + static_cast<std::size_t>(h[p] - '0');
    }
    got.push_back(v);
  }
  auto text = [](const std::vector<std::size_t>& s) {
    std::string t = "[";
    for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + "]";
  };
  require(got == shape, where + ": shape " + text(got) + ", expected " + text(shape));
  require(shape.size() <= 2, where + ": only 1-D and 2-D arrays are read");

  std::size_t count = 1;
  for (std::size_t s : shape) count *= s;
  const std::size_t data = start + header_len;
  require(npy.size() - data >= count * item, where + ": truncated .npy data");
  const uint16_t probe = 1;
  uint8_t first = 0;
  std::memcpy(&first, &probe, 1);
  const bool swap = big == (first == 1);  // data endianness differs from the host's
  std::vector<float> out(count);
  const std::size_t rows = shape.size() == 2 ? shape[0] : count;
  const std::size_t cols = shape.size() == 2 ? shape[1] : 1;
  for (std::size_t i = 0; i < count; ++i) {
    uint8_t b[8];
    std::memcpy(b, npy.data() + data + i * item, item);
    if (swap)
      for (std::size_t k = 0; k < item / 2; ++k) std::swap(b[k], b[item - 1 - k]);
    float v = 0.0f;
    if (item == 4) {
      std::memcpy(&v, b, 4);
    } else {
      double d = 0.0;
      std::memcpy(&d, b, 8);
      v = static_cast<float>(d);
    }
    // Element i is (i % rows, i / rows) in Fortran order, else (i / cols, i % cols).
    out[fortran ? (i % rows) * cols + i / rows : i] = v;
  }
  return out;
}

}  // namespace moofa::detail
