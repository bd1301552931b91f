#include "moofa/space_io.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "json_io.hpp"
#include "require.hpp"
#include "space_io_detail.hpp"

namespace moofa {

using detail::Json;
using detail::require;

namespace {

const char* const kActivations[] = {"relu",    "relu6", "h_swish", "h_sigmoid",
                                    "sigmoid", "swish", "none"};

std::string allowed_list(const std::vector<std::string>& keys) {
  std::string s = "[";
  for (std::size_t i = 0; i < keys.size(); ++i) s += (i ? ", '" : "'") + keys[i] + "'";
  return s + "]";
}

void check_keys(const Json& obj, const std::vector<std::string>& allowed,
                const std::string& where) {
  for (const auto& member : obj.object)
    require(std::find(allowed.begin(), allowed.end(), member.first) != allowed.end(),
            where + ": unknown key '" + member.first + "'; allowed: " + allowed_list(allowed));
}

int integer(const Json& v, const std::string& field, int min_value) {
  require(v.type == Json::Type::kNumber && v.number == std::floor(v.number) &&
              v.number >= min_value && v.number <= std::numeric_limits<int>::max(),
          field + " must be an integer >= " + std::to_string(min_value) + ", got " +
              (v.type == Json::Type::kNumber ? std::to_string(v.number) : v.type_name()));
  return static_cast<int>(v.number);
}

// Whether `act` is h-swish (the one activation the memory models tell apart).
bool hard_swish(const Json* v, const char* fallback, const std::string& field) {
  if (!v) return std::string(fallback) == "h_swish";
  std::vector<std::string> names(std::begin(kActivations), std::end(kActivations));
  require(v->type == Json::Type::kString &&
              std::find(names.begin(), names.end(), v->string) != names.end(),
          field + ": activation must be one of " + allowed_list(names) + ", got " +
              (v->type == Json::Type::kString ? "'" + v->string + "'" : v->type_name()));
  return v->string == "h_swish";
}

// A list of choices as moofa.Space reads it: numbers, no repeats, sorted ascending.
std::vector<double> choices(const Json* v, std::vector<double> fallback, bool integral,
                            const std::string& field) {
  if (!v) return fallback;
  require(v->type == Json::Type::kArray,
          field + " must be an array of numbers, got " + v->type_name());
  require(!v->array.empty() && v->array.size() <= 250, field + " must hold 1..250 choices");
  std::vector<double> out;
  for (const Json& x : v->array) {
    require(x.type == Json::Type::kNumber, field + " must hold numbers, got " + x.type_name());
    if (integral)
      require(x.number == std::floor(x.number) && x.number >= 1 &&
                  x.number <= std::numeric_limits<int>::max(),
              field + " must hold positive integers, got " + std::to_string(x.number));
    else
      require(x.number > 0, field + " must hold positive numbers, got " + std::to_string(x.number));
    out.push_back(x.number);
  }
  std::sort(out.begin(), out.end());
  require(std::adjacent_find(out.begin(), out.end()) == out.end(), field + " has repeated values");
  return out;
}

std::vector<int> ints(const std::vector<double>& v) { return std::vector<int>(v.begin(), v.end()); }

}  // namespace

namespace detail {

SpaceSpec space_from_value(const Json& doc, const std::string& where) {
  require(doc.type == Json::Type::kObject,
          where + ": a space must be a JSON object, got " + doc.type_name());
  check_keys(doc,
             {"name", "stages", "kernels", "expands", "depths", "resolutions", "first_conv_width",
              "first_conv_act", "first_conv_kernel", "first_conv_stride", "first_block_width",
              "first_block_act", "final_expand_width", "feature_mix_width", "n_classes",
              "expand_by_depth", "head_act", "in_channels", "description"},
             where);
  SpaceSpec sp;
  const Json* name = doc.find("name");
  require(name && name->type == Json::Type::kString && !name->string.empty(),
          where + ": 'name' must be a non-empty string");
  sp.name = name->string;
  auto field = [&](const std::string& key) { return where + ": '" + key + "'"; };

  sp.kernels = ints(choices(doc.find("kernels"), {3, 5, 7}, true, field("kernels")));
  sp.expands = choices(doc.find("expands"), {3, 4, 6}, false, field("expands"));
  sp.depths = ints(choices(doc.find("depths"), {2, 3, 4}, true, field("depths")));
  sp.resolutions =
      ints(choices(doc.find("resolutions"), {128, 160, 192, 224}, true, field("resolutions")));
  const int deepest = *std::max_element(sp.depths.begin(), sp.depths.end());

  const Json* stages = doc.find("stages");
  require(stages && stages->type == Json::Type::kArray && !stages->array.empty(),
          field("stages") + " must be a non-empty array of stage objects");
  for (std::size_t i = 0; i < stages->array.size(); ++i) {
    const Json& s = stages->array[i];
    const std::string at = where + ": 'stages'[" + std::to_string(i) + "]";
    require(s.type == Json::Type::kObject, at + " must be an object, got " + s.type_name());
    check_keys(s, {"width", "stride", "act", "se", "max_depth"}, at);
    StageSpec st;
    const Json* width = s.find("width");
    require(width != nullptr, at + ": missing key 'width'");
    st.width = integer(*width, at + ".width", 1);
    if (const Json* v = s.find("stride")) {
      st.stride = integer(*v, at + ".stride", 1);
      require(st.stride == 1 || st.stride == 2, at + ".stride must be 1 or 2");
    }
    st.hard_swish = hard_swish(s.find("act"), "relu", at + ".act");
    if (const Json* v = s.find("se")) {
      require(v->type == Json::Type::kBool,
              at + ".se must be true or false, got " + v->type_name());
      st.se = v->boolean;
    }
    st.max_depth = deepest;
    if (const Json* v = s.find("max_depth"); v && v->type != Json::Type::kNull) {
      const int d = integer(*v, at + ".max_depth", 0);
      if (d) st.max_depth = d;
    }
    sp.stages.push_back(st);
  }

  struct IntField {
    const char* key;
    int* target;
    int min_value;
  };
  for (const IntField& f :
       {IntField{"first_conv_width", &sp.first_conv_width, 1},
        IntField{"first_conv_kernel", &sp.first_conv_kernel, 1},
        IntField{"first_conv_stride", &sp.first_conv_stride, 1},
        IntField{"first_block_width", &sp.first_block_width, 1},
        IntField{"final_expand_width", &sp.final_expand_width, 1},
        IntField{"feature_mix_width", &sp.feature_mix_width, 0},
        IntField{"n_classes", &sp.n_classes, 1}, IntField{"in_channels", &sp.in_channels, 1}})
    if (const Json* v = doc.find(f.key)) *f.target = integer(*v, field(f.key), f.min_value);
  sp.first_conv_hard_swish =
      hard_swish(doc.find("first_conv_act"), "h_swish", field("first_conv_act"));
  sp.first_block_hard_swish =
      hard_swish(doc.find("first_block_act"), "relu", field("first_block_act"));
  sp.head_hard_swish = hard_swish(doc.find("head_act"), "h_swish", field("head_act"));

  // {"2": 3, "3": 4, "4": 6}: the expand ratio of every depth choice.
  if (const Json* v = doc.find("expand_by_depth"); v && v->type != Json::Type::kNull) {
    require(v->type == Json::Type::kObject,
            field("expand_by_depth") +
                " must be an object mapping each depth to its expand ratio " +
                "(e.g. {\"2\": 3, \"3\": 4, \"4\": 6}) or null, got " + v->type_name());
    for (int d : sp.depths) {
      const Json* ratio = v->find(std::to_string(d));
      require(ratio != nullptr, field("expand_by_depth") +
                                    " must give a ratio for every depth; missing " +
                                    std::to_string(d));
      require(ratio->type == Json::Type::kNumber,
              field("expand_by_depth") + ": ratio for depth " + std::to_string(d) +
                  " must be a number, got " + ratio->type_name());
      const auto it = std::find(sp.expands.begin(), sp.expands.end(), ratio->number);
      require(it != sp.expands.end(), field("expand_by_depth") + ": ratio " +
                                          std::to_string(ratio->number) + " is not one of expands");
      sp.expand_by_depth.push_back(static_cast<int>(it - sp.expands.begin()));
    }
    require(v->object.size() == sp.depths.size(),
            field("expand_by_depth") + " has keys that are not depths");
  }
  try {
    sp.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + ": " + e.what());
  }
  return sp;
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), what + " file " + path + " cannot be opened");
  std::ostringstream s;
  s << in.rdbuf();
  require(!in.bad(), what + " file " + path + " cannot be read");
  return s.str();
}

}  // namespace detail

SpaceSpec space_from_json(const std::string& json_text, const std::string& where) {
  return detail::space_from_value(detail::parse_json(json_text, where), where);
}

SpaceSpec read_space(const std::string& path) {
  return space_from_json(detail::read_file(path, "space"), path);
}

}  // namespace moofa
