// moofa's predictor files without Python: <name>.json (space, layer shapes, output scale,
// the weights' SHA-256) beside <name>.npz (NumPy's archive of float arrays w0, b0, w1, ...,
// and skip when the JSON says so), as moofa.Predictor.save writes them and moofa ships
// them (moofa/predictors/). The archive's SHA-256 is checked against the JSON, and every
// member's CRC-32; the .npz is read with a built-in DEFLATE decoder (no zlib).
#pragma once

#include <string>
#include <vector>

#include "moofa/predictor.hpp"
#include "moofa/space.hpp"

namespace moofa {

struct PredictorFile {
  std::string name;
  SpaceSpec space;                 // from the JSON's "space"."definition"
  std::vector<DenseLayer> layers;  // x @ W + b, ReLU between
  std::vector<float> skip;         // empty without a linear skip
  float scale = 1.0f;
  float offset = 0.0f;
};

// Reads a predictor: `path` is its .json, its .npz, or the stem of both. Throws
// std::invalid_argument naming the file and the field on a missing, corrupt or
// inconsistent file (for example a SHA-256 that does not match).
PredictorFile read_predictor_file(const std::string& path);

// The scorer of a predictor file (see MlpPredictor for isa and precision).
MlpPredictor load_predictor(const std::string& path, Isa isa = default_isa(),
                            Precision precision = Precision::kFloat32);

}  // namespace moofa
