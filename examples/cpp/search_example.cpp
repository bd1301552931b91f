// The most accurate subnet under a peak-memory budget, from C++: moofa's evolutionary
// search with a predictor file and the exact memory evaluator. For the same predictor,
// budget (in items, or bytes under "tflm"), seed, population and generations it finds what
// moofa.search finds in Python.
//
//   search_example PREDICTOR BUDGET [--seed N] [--population N] [--generations N]
//                  [--memory-model full|activations|tflm]
//
// PREDICTOR: a predictor's .json (beside its .npz), or the name of a shipped one
// ("moofa", "ofa", "compofa", ...). Prints one "key value" line per figure.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "moofa/memory.hpp"
#include "moofa/predictor_io.hpp"
#include "moofa/search.hpp"

namespace {

int64_t parse_int(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || v < 0)
    throw std::invalid_argument(what + " must be a non-negative integer, got '" + text + "'");
  return static_cast<int64_t>(v);
}

std::string predictor_path(const std::string& arg) {
  const bool is_path = arg.find('/') != std::string::npos || arg.find('\\') != std::string::npos ||
                       arg.find(".json") != std::string::npos;
  return is_path ? arg : std::string(MOOFA_PREDICTOR_DIR) + "/" + arg + ".json";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) {
      std::cerr << "usage: " << argv[0]
                << " PREDICTOR BUDGET [--seed N] [--population N] [--generations N]"
                   " [--memory-model full|activations|tflm]\n";
      return 2;
    }
    moofa::EvolutionOptions options;  // the defaults of moofa.search
    std::string model_name = "full";
    const std::string predictor_arg = argv[1];
    moofa::Constraints constraints;
    constraints.max_peak = parse_int(argv[2], "BUDGET");
    for (int i = 3; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
      const std::string value = argv[i + 1];
      if (flag == "--seed")
        options.seed = static_cast<uint64_t>(parse_int(value, flag));
      else if (flag == "--population")
        options.population = static_cast<int>(parse_int(value, flag));
      else if (flag == "--generations")
        options.generations = static_cast<int>(parse_int(value, flag));
      else if (flag == "--memory-model")
        model_name = value;
      else
        throw std::invalid_argument("unknown option " + flag +
                                    " (allowed: --seed, --population, --generations, "
                                    "--memory-model)");
    }

    const moofa::PredictorFile file = moofa::read_predictor_file(predictor_path(predictor_arg));
    const moofa::MlpPredictor predictor(file.space, file.layers, file.skip, file.scale,
                                        file.offset);
    const moofa::Evaluator evaluator(file.space, moofa::memory_model_from_name(model_name));
    const moofa::EvolutionResult r = moofa::evolve(evaluator, predictor, constraints, options);
    if (r.best_row.empty()) {
      std::cerr << "no subnet fits the budget\n";
      return 1;
    }
    const moofa::Profile profile = evaluator.profile(r.best_row.data());

    std::cout << "predictor " << file.name << "\n";
    std::cout << "space " << file.space.name << "\n";
    std::cout << "budget " << constraints.max_peak << "\n";
    std::cout << "row";
    for (uint8_t v : r.best_row) std::cout << ' ' << static_cast<int>(v);
    std::cout << "\n";
    std::cout << std::setprecision(9) << "score " << r.best_score << "\n";
    std::cout << "peak " << r.best_peak << "\n";
    std::cout << std::setprecision(17) << "mflops " << profile.mflops << "\n";
    std::cout << "params " << profile.params << "\n";
    std::cout << "evaluations " << r.evaluations << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
