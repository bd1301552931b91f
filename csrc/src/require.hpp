// Argument checks of the core: std::invalid_argument with a message naming the field.
#pragma once

#include <stdexcept>
#include <string>

namespace moofa::detail {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace moofa::detail
