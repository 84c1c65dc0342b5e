// Embedding sigprop: build a spec in code, run the infinite-width theory and a small Monte Carlo
// ensemble in-process, and read the profiles as contiguous arrays (here through Eigen::Map).
//
//   depth_profile [theory.json simulate.json]   writes both profiles as `sigprop ... --json` would
//
// The spec is the default stack at depth 24 with 1/dh attention and width 64; simulate runs
// 8 samples with seed 7 on the cpu backend with 2 threads (tests/embed/embed_test.sh runs the
// same through the CLI and compares).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <Eigen/Dense>

#include "sigprop/sigprop.hpp"

namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    sigprop::StackSpec spec;  // the defaults of examples/default.toml
    spec.depth = 24;
    spec.width = 64;
    spec.qk_scale = sigprop::QkScale::InvDh;
    sigprop::api::apply_overrides(spec, {"input.rho0=0.2"});  // the CLI's --set spelling

    const sigprop::api::Profile th = sigprop::api::theory(spec);
    sigprop::api::SimulateSettings ss;
    ss.samples = 8;
    ss.seed = 7;
    ss.backend = "cpu";
    ss.threads = 2;
    int calls = 0;
    const sigprop::api::Profile mc = sigprop::api::simulate(spec, ss, [&](double, std::string_view) {
      ++calls;
      return true;  // false would cancel: sigprop::CancelledError
    });

    // The consumer's own Eigen, with its own alignment and vector width.
    const int n = th.layers();
    const Eigen::Map<const Eigen::VectorXd> q_th(th.values("q").data(), n);
    const Eigen::Map<const Eigen::VectorXd> q_mc(mc.values("q").data(), n);
    const Eigen::Map<const Eigen::VectorXd> q_se(mc.values("q_se").data(), n);
    const Eigen::VectorXd z = (q_mc - q_th).cwiseQuotient(q_se);
    // Growth rate of log q over depth by least squares: [1 l] b = log q.
    Eigen::MatrixXd A(n, 2);
    for (int l = 0; l < n; ++l) A.row(l) << 1.0, l;
    const Eigen::VectorXd b = A.colPivHouseholderQr().solve(q_th.array().log().matrix());

    std::printf("sigprop %s, depth %d, qk_scale %s, width %d; simulate: %d samples, seed 7, %d progress calls\n",
                sigprop::api::version().c_str(), spec.depth, sigprop::to_string(spec.qk_scale).c_str(), spec.width,
                ss.samples, calls);
    std::printf("%5s %14s %14s %12s %8s %14s\n", "layer", "q theory", "q simulate", "q s.e.", "z", "rho theory");
    const auto rho = th.values("rho");
    for (int l = 0; l < n; l += 4)
      std::printf("%5d %14.6g %14.6g %12.3g %8.2f %14.6g\n", l, q_th[l], q_mc[l], q_se[l], z[l], rho[l]);
    std::printf("d log q / d layer (theory, least squares): %.6g; max |z| = %.2f\n", b[1], z.cwiseAbs().maxCoeff());
    for (const auto& w : mc.warnings()) std::printf("warning: %s\n", w.c_str());

    if (argc == 3) {
      write(argv[1], th.to_json());
      write(argv[2], mc.to_json());
    }
    return 0;
  } catch (const sigprop::ConfigError& e) {
    std::fprintf(stderr, "depth_profile: bad spec: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "depth_profile: %s\n", e.what());
    return 1;
  }
}
