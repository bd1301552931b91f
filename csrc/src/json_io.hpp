// A small JSON reader (RFC 8259) for the files moofa writes beside its predictors and
// spaces: no external dependency. Values are kept as parsed; objects keep their key order.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace moofa::detail {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0.0;
  bool integral = false;  // a number written without fraction or exponent
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  // The member named key of an object, or nullptr.
  const Json* find(const std::string& key) const;
  // "null", "a boolean", "a number", "a string", "an array" or "an object".
  std::string type_name() const;
};

// Throws std::invalid_argument naming `where` and the byte offset of the first error.
Json parse_json(const std::string& text, const std::string& where);

}  // namespace moofa::detail
