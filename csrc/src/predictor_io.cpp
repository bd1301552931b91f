#include "moofa/predictor_io.hpp"

#include <cmath>
#include <stdexcept>

#include "json_io.hpp"
#include "require.hpp"
#include "space_io_detail.hpp"
#include "zip_io.hpp"

namespace moofa {

using detail::Json;
using detail::require;

namespace {

// The format this reader understands (moofa.predictor.FORMAT, FORMAT_VERSION, ENCODING).
constexpr const char* kFormat = "moofa-predictor";
constexpr int kFormatVersion = 1;
constexpr const char* kEncoding = "one-hot-v1";
// Bounds on what a file may declare, checked before anything is allocated.
constexpr double kMaxWidth = 1 << 20;
constexpr double kMaxWeights = 1 << 28;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace

PredictorFile read_predictor_file(const std::string& path) {
  std::string stem = path;
  if (ends_with(stem, ".json") || ends_with(stem, ".npz"))
    stem = stem.substr(0, stem.size() - (ends_with(stem, ".npz") ? 4 : 5));
  const std::string json_path = stem + ".json";
  const Json doc = detail::parse_json(detail::read_file(json_path, "predictor"), json_path);
  const std::string& jp = json_path;
  require(doc.type == Json::Type::kObject, jp + ": a predictor file must hold a JSON object");
  const Json* format = doc.find("format");
  require(format && format->type == Json::Type::kString && format->string == kFormat,
          jp + ": not a moofa predictor (expected \"format\": \"" + kFormat + "\")");
  const Json* version = doc.find("version");
  require(version && version->type == Json::Type::kNumber && version->number == kFormatVersion,
          jp + ": format version is not supported (this reader reads version " +
              std::to_string(kFormatVersion) + ")");
  const Json* encoding = doc.find("encoding");
  const Json* enc_name = encoding ? encoding->find("name") : nullptr;
  require(enc_name && enc_name->type == Json::Type::kString && enc_name->string == kEncoding,
          jp + ": 'encoding' is not supported (expected name '" + kEncoding + "')");

  PredictorFile out;
  const Json* name = doc.find("name");
  const std::size_t slash = stem.find_last_of("/\\");
  out.name = name && name->type == Json::Type::kString
                 ? name->string
                 : (slash == std::string::npos ? stem : stem.substr(slash + 1));
  const Json* space = doc.find("space");
  const Json* definition = space ? space->find("definition") : nullptr;
  require(definition && definition->type == Json::Type::kObject,
          jp + ": 'space' must hold the space's 'definition' (this reader does not know spaces "
               "by name)");
  out.space = detail::space_from_value(*definition, jp + ": 'space'.'definition'");
  const int n_features = out.space.one_hot_size();
  const Json* size = encoding->find("size");
  require(size && size->type == Json::Type::kNumber && size->number == n_features,
          jp + ": encoding size does not match space '" + out.space.name + "' (" +
              std::to_string(n_features) + " features)");

  const Json* layers = doc.find("layers");
  require(layers && layers->type == Json::Type::kArray && !layers->array.empty(),
          jp + ": 'layers' must list the layer shapes as [in, out] pairs");
  int n_in = n_features;
  double total = 0;
  for (std::size_t i = 0; i < layers->array.size(); ++i) {
    const Json& shape = layers->array[i];
    const std::string at = jp + ": 'layers'[" + std::to_string(i) + "]";
    bool ok = shape.type == Json::Type::kArray && shape.array.size() == 2;
    for (std::size_t k = 0; ok && k < 2; ++k) {
      const Json& v = shape.array[k];
      ok = v.type == Json::Type::kNumber && v.integral && v.number >= 1 && v.number <= kMaxWidth;
    }
    require(ok, at + " must be an [in, out] pair of integers in 1.." +
                    std::to_string(static_cast<int>(kMaxWidth)));
    const int in = static_cast<int>(shape.array[0].number);
    const int o = static_cast<int>(shape.array[1].number);
    require(in == n_in, at + ": its input must be " + std::to_string(n_in) +
                            (i == 0 ? " (the encoding size)" : " (the previous layer's output)"));
    total += static_cast<double>(in) * o + o;
    require(total <= kMaxWeights, jp + ": 'layers' declares too many weights");
    DenseLayer layer;
    layer.in = in;
    layer.out = o;
    out.layers.push_back(std::move(layer));
    n_in = o;
  }
  require(n_in == 1, jp + ": 'layers' must end in one output (top-1)");

  bool skip = false;
  if (const Json* v = doc.find("skip")) {
    require(v->type == Json::Type::kBool, jp + ": 'skip' must be true or false");
    skip = v->boolean;
  }
  if (const Json* output = doc.find("output")) {
    require(output->type == Json::Type::kObject,
            jp + ": 'output' must be an object like {\"scale\": 1, \"offset\": 0}");
    for (auto [key, target] : {std::pair<const char*, float*>{"scale", &out.scale},
                               std::pair<const char*, float*>{"offset", &out.offset}}) {
      if (const Json* v = output->find(key)) {
        require(v->type == Json::Type::kNumber && std::isfinite(v->number),
                jp + ": 'output'." + key + " must be a finite number");
        *target = static_cast<float>(v->number);
      }
    }
  }

  const std::string npz_path = stem + ".npz";
  const std::string raw = detail::read_file(npz_path, "predictor weights");
  if (const Json* want = doc.find("weights_sha256"); want && want->type != Json::Type::kNull) {
    require(want->type == Json::Type::kString, jp + ": 'weights_sha256' must be a string");
    require(detail::sha256_hex(raw) == want->string,
            npz_path + ": weights do not match " +
                json_path.substr(directory_of(json_path).size()) +
                " (SHA-256 differs: truncated, corrupt, or from another predictor)");
  }
  const detail::ZipReader zip(raw, npz_path);
  auto array = [&](const std::string& key, std::vector<std::size_t> shape) {
    const std::string member = key + ".npy";
    require(zip.has(member), npz_path + ": array " + key + " is missing (the JSON declares it)");
    return detail::read_npy_float(zip.read(member), shape, npz_path + ": array " + key);
  };
  for (std::size_t i = 0; i < out.layers.size(); ++i) {
    DenseLayer& layer = out.layers[i];
    const auto in = static_cast<std::size_t>(layer.in), o = static_cast<std::size_t>(layer.out);
    layer.weight = array("w" + std::to_string(i), {in, o});
    layer.bias = array("b" + std::to_string(i), {o});
  }
  if (skip) out.skip = array("skip", {static_cast<std::size_t>(n_features)});
  return out;
}

MlpPredictor load_predictor(const std::string& path, Isa isa, Precision precision) {
  PredictorFile f = read_predictor_file(path);
  return MlpPredictor(f.space, std::move(f.layers), std::move(f.skip), f.scale, f.offset, isa,
                      precision);
}

}  // namespace moofa
