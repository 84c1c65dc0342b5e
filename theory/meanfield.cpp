#include "theory/meanfield.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "theory/gauss.hpp"

namespace sigprop::theory {
namespace {

// One-dimensional Gaussian moments E[f(sqrt(q) z)] by Gauss-Hermite; closed forms
// through ActKernel where it has them (relu's kink would spoil the rule).
struct Diag {
  Activation act;
  ActKernel ak;
  GaussHermite gh;
  Diag(Activation a, int n) : act(a), ak(a, 2), gh(2 * n) {}
  [[nodiscard]] double k(double q) const {
    if (ak.exact()) return ak.eval(q, q, q).k;
    double s = 0, sq = std::sqrt(q);
    for (size_t i = 0; i < gh.x.size(); ++i) {
      double f = act_value(act, sq * gh.x[i]);
      s += gh.w[i] * f * f;
    }
    return s;
  }
  [[nodiscard]] double kd(double q) const {
    if (ak.exact()) return ak.eval(q, q, q).kd;
    double s = 0, sq = std::sqrt(q);
    for (size_t i = 0; i < gh.x.size(); ++i) {
      double f = act_deriv(act, sq * gh.x[i]);
      s += gh.w[i] * f * f;
    }
    return s;
  }
};

}  // namespace

DenseMeanField dense_mean_field(Activation act, double sw2, double sb2, int quad_order) {
  if (!(sw2 > 0) || !(sb2 >= 0)) throw ConfigError("mean field: sigma_w2 must be > 0 and sigma_b2 >= 0");
  DenseMeanField mf;
  mf.sigma_w2 = sw2;
  mf.sigma_b2 = sb2;
  Diag dg(act, quad_order);
  ActKernel ak(act, quad_order);
  auto qmap = [&](double q) { return sw2 * dg.k(q) + sb2; };

  // Stable length fixed point by iteration from q = 1 (the basin a unit-variance input
  // starts in), then a secant polish.
  double q = 1.0;
  mf.q_converged = false;
  for (int it = 0; it < 200000; ++it) {
    double qn = qmap(q);
    if (!std::isfinite(qn) || qn > 1e100) break;
    if (std::abs(qn - q) <= 1e-15 * std::max(1.0, q)) {
      q = qn;
      mf.q_converged = true;
      break;
    }
    q = qn;
  }
  if (!mf.q_converged) {
    mf.phase = "unbounded";
    mf.q_star = std::numeric_limits<double>::infinity();
    mf.chi1 = mf.chi_c = mf.dq_slope = std::nan("");
    mf.xi_q = mf.xi_c = mf.xi_grad = std::nan("");
    mf.c_star = std::nan("");
    return mf;
  }
  mf.q_star = q;
  double h = 1e-5 * std::max(q, 1e-3);
  mf.dq_slope = q > h ? (qmap(q + h) - qmap(q - h)) / (2 * h) : (qmap(q + h) - qmap(q)) / h;
  mf.chi1 = sw2 * dg.kd(q);

  if (q <= 0) {
    // Zero signal: every input collapses to the origin; correlations are undefined.
    mf.phase = "ordered";
    mf.c_star = 1;
    mf.chi_c = mf.chi1;
  } else {
    auto cmap = [&](double c) { return (sw2 * ak.eval(q, q, c * q).k + sb2) / q; };
    if (mf.chi1 <= 1 + 1e-12) {
      mf.c_star = 1;
      mf.chi_c = mf.chi1;
    } else {
      // Chaotic: c = 1 is unstable; iterate from c = 0 to the stable c* < 1.
      double c = 0;
      for (int it = 0; it < 200000; ++it) {
        double cn = cmap(c);
        if (std::abs(cn - c) < 1e-15) {
          c = cn;
          break;
        }
        c = cn;
      }
      mf.c_star = c;
      mf.chi_c = sw2 * ak.eval(q, q, c * q).kd;
    }
    const double tol = 1e-9;
    mf.phase = std::abs(mf.chi1 - 1) < tol ? "critical" : (mf.chi1 < 1 ? "ordered" : "chaotic");
  }
  auto scale = [](double slope) {
    if (!(slope > 0)) return 0.0;
    double lg = std::log(slope);
    return lg == 0 ? std::numeric_limits<double>::infinity() : -1.0 / lg;
  };
  mf.xi_q = scale(mf.dq_slope);
  mf.xi_c = scale(mf.chi_c);
  // Gradients scale like chi1^l: a positive scale for decay, negative for growth.
  mf.xi_grad = mf.chi1 > 0 && mf.chi1 != 1 ? -1.0 / std::log(mf.chi1) : std::numeric_limits<double>::infinity();
  return mf;
}

nlohmann::json to_json(const DenseMeanField& mf) {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(fmt::format("{}", x)); };
  return {{"sigma_w2", mf.sigma_w2}, {"sigma_b2", mf.sigma_b2}, {"q_star", num(mf.q_star)},
          {"q_converged", mf.q_converged}, {"chi1", num(mf.chi1)}, {"c_star", num(mf.c_star)},
          {"chi_c", num(mf.chi_c)}, {"dq_slope", num(mf.dq_slope)}, {"xi_q", num(mf.xi_q)},
          {"xi_c", num(mf.xi_c)}, {"xi_grad", num(mf.xi_grad)}, {"phase", mf.phase},
          {"trainable_depth_6xi_c", num(mf.trainable_depth())}};
}

std::vector<DenseMeanField> phase_diagram(Activation act, double sw2_min, double sw2_max, int n_sw2, double sb2_min,
                                          double sb2_max, int n_sb2, int quad_order) {
  if (n_sw2 < 1 || n_sb2 < 1) throw ConfigError("phase diagram: grid sizes must be >= 1");
  if (!(sw2_min > 0) || sw2_max < sw2_min) throw ConfigError("phase diagram: need 0 < sigma_w2 min <= max");
  if (!(sb2_min >= 0) || sb2_max < sb2_min) throw ConfigError("phase diagram: need 0 <= sigma_b2 min <= max");
  std::vector<DenseMeanField> rows;
  for (int j = 0; j < n_sb2; ++j)
    for (int i = 0; i < n_sw2; ++i) {
      double sw2 = n_sw2 == 1 ? sw2_min : sw2_min + (sw2_max - sw2_min) * i / (n_sw2 - 1);
      double sb2 = n_sb2 == 1 ? sb2_min : sb2_min + (sb2_max - sb2_min) * j / (n_sb2 - 1);
      rows.push_back(dense_mean_field(act, sw2, sb2, quad_order));
    }
  return rows;
}

std::string phase_diagram_csv(const std::vector<DenseMeanField>& rows, Activation act) {
  std::ostringstream o;
  o << "# sigprop phase diagram, blocks=dense, activation=" << to_string(act) << "\n";
  o << "sigma_w2,sigma_b2,q_star,chi1,c_star,chi_c,xi_q,xi_c,xi_grad,phase,trainable_depth\n";
  auto f = [](double x) { return std::isfinite(x) ? fmt::format("{:.12g}", x) : fmt::format("{}", x); };
  for (auto& r : rows)
    o << f(r.sigma_w2) << "," << f(r.sigma_b2) << "," << f(r.q_star) << "," << f(r.chi1) << "," << f(r.c_star)
      << "," << f(r.chi_c) << "," << f(r.xi_q) << "," << f(r.xi_c) << "," << f(r.xi_grad) << "," << r.phase << ","
      << f(r.trainable_depth()) << "\n";
  return o.str();
}

}  // namespace sigprop::theory
