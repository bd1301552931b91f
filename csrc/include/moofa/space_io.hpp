// Search spaces from moofa's JSON description: the object moofa.Space.to_dict writes, which
// `moofa search --space FILE` reads and every predictor's .json holds under "space".
// "definition". Keys left out take moofa.Space's defaults; the activations only set the
// h-swish flags the "tflm" memory model reads.
#pragma once

#include <string>

#include "moofa/space.hpp"

namespace moofa {

// The space described by a JSON document (its text). Throws std::invalid_argument naming
// `where`, the key and the allowed values on a bad or unknown key; the result is validated.
SpaceSpec space_from_json(const std::string& json_text, const std::string& where = "space");

// The same, read from a file (std::invalid_argument when it cannot be read).
SpaceSpec read_space(const std::string& path);

}  // namespace moofa
