// What the space and predictor readers share.
#pragma once

#include <string>

#include "json_io.hpp"
#include "moofa/space.hpp"

namespace moofa::detail {

// The space a parsed JSON object describes (see space_io.hpp).
SpaceSpec space_from_value(const Json& doc, const std::string& where);
// A whole file; `what` names it in messages ("space", "predictor").
std::string read_file(const std::string& path, const std::string& what);

}  // namespace moofa::detail
