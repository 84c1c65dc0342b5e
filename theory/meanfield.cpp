#include "theory/meanfield.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "theory/gauss.hpp"

namespace sigprop::theory {
namespace {

// E[phi(sqrt(q) z)^2] and E[phi'(sqrt(q) z)^2]: the diagonal of the dual kernels.
struct Diag {
  ActKernel ak;
  Diag(Activation a, int n) : ak(a, n) {}
  [[nodiscard]] double k(double q) const { return ak.eval(q, q, q).k; }
  [[nodiscard]] double kd(double q) const { return ak.eval(q, q, q).kd; }
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

  // Stable length fixed point: plain iteration from q = 1 (the basin a unit-variance input
  // starts in) moves towards it; Steffensen's method then converges quadratically even
  // where the map's slope is near 1 (close to criticality, plain iteration needs ~1/|1-slope|
  // steps).
  auto fixed_point = [](auto&& g, double x, int plain, double lo_clip, double floor, bool& ok) {
    // Converged when |x_{n+1} - x_n| <= 1e-15 |x_n| + floor: relative for q (whose fixed
    // point may be 0 and must not be declared at 1e-16), absolute for correlations.
    ok = false;
    for (int it = 0; it < plain; ++it) {
      double xn = g(x);
      if (!std::isfinite(xn) || xn > 1e100) return xn;
      if (std::abs(xn - x) <= 1e-15 * std::abs(x) + floor) {
        ok = true;
        return xn;
      }
      x = xn;
    }
    for (int it = 0; it < 200; ++it) {
      double g1 = g(x), g2 = g(g1), den = g2 - 2 * g1 + x;
      double xn = den != 0 ? x - (g1 - x) * (g1 - x) / den : g1;
      if (!std::isfinite(xn) || xn < lo_clip) xn = g2;  // Aitken step left the domain
      if (std::abs(xn - x) <= 1e-15 * std::abs(x) + floor) {
        ok = std::abs(g(xn) - xn) <= 1e-12 * std::abs(xn) + floor;
        return xn;
      }
      x = xn;
      if (!std::isfinite(x) || x > 1e100) return x;
    }
    return x;
  };
  bool ok = false;
  double q = fixed_point(qmap, 1.0, 2000, 0.0, 1e-300, ok);
  // With sigma_b2 = 0 and phi(0) = 0, q = 0 is a fixed point; at criticality (chi1 = 1 there,
  // e.g. tanh at sigma_w2 = 1) q decays only like 1/l and no iteration reaches it.
  if ((!ok || q < 1e-200) && sb2 == 0 && std::isfinite(q) && q >= 0 && q < 1e-3 && qmap(q) <= q) {
    q = 0;
    ok = true;
  }
  mf.q_converged = ok && std::isfinite(q);
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
  if (q == 0) mf.dq_slope = sw2 * dg.kd(0.0);  // d/dq E[phi(sqrt(q) z)^2] at 0 is phi'(0)^2
  mf.chi1 = sw2 * dg.kd(q);

  const double tol = 1e-9;
  if (q <= 0) {
    // Zero signal: every input collapses to the origin; the correlation map is read at
    // its q -> 0 limit, where chi_c = chi1.
    mf.c_star = 1;
    mf.chi_c = mf.chi1;
    mf.phase = std::abs(mf.chi1 - 1) < tol ? "critical" : (mf.chi1 < 1 ? "ordered" : "chaotic");
  } else {
    auto cmap = [&](double c) { return (sw2 * ak.eval(q, q, c * q).k + sb2) / q; };
    if (mf.chi1 <= 1 + 1e-12) {
      mf.c_star = 1;
      mf.chi_c = mf.chi1;
    } else {
      // Chaotic: c = 1 is unstable; iterate from c = 0 to the stable c* < 1.
      bool cok = false;
      double c = fixed_point(cmap, 0.0, 2000, -1.0, 1e-15, cok);
      mf.c_star = c;
      mf.chi_c = sw2 * ak.eval(q, q, c * q).kd;
    }
    mf.phase = std::abs(mf.chi1 - 1) < tol ? "critical" : (mf.chi1 < 1 ? "ordered" : "chaotic");
  }
  auto scale = [](double slope) {
    if (!(slope > 0)) return 0.0;
    // Within rounding of 1 the map is critical: the scale is infinite, not +-1e14.
    if (std::abs(slope - 1) < 1e-12) return std::numeric_limits<double>::infinity();
    return -1.0 / std::log(slope);
  };
  mf.xi_q = scale(mf.dq_slope);
  mf.xi_c = scale(mf.chi_c);
  // Gradients scale like chi1^l: a positive scale for decay, negative for growth.
  mf.xi_grad = mf.chi1 > 0 && std::abs(mf.chi1 - 1) >= 1e-12 ? -1.0 / std::log(mf.chi1)
                                                             : std::numeric_limits<double>::infinity();
  return mf;
}

nlohmann::json to_json(const DenseMeanField& mf) {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(fmt::format("{}", x)); };
  return {{"sigma_w2", mf.sigma_w2},
          {"sigma_b2", mf.sigma_b2},
          {"q_star", num(mf.q_star)},
          {"q_converged", mf.q_converged},
          {"chi1", num(mf.chi1)},
          {"c_star", num(mf.c_star)},
          {"chi_c", num(mf.chi_c)},
          {"dq_slope", num(mf.dq_slope)},
          {"xi_q", num(mf.xi_q)},
          {"xi_c", num(mf.xi_c)},
          {"xi_grad", num(mf.xi_grad)},
          {"phase", mf.phase},
          {"trainable_depth_6xi_c", num(mf.trainable_depth())}};
}

std::vector<DenseMeanField> phase_diagram(Activation act, double sw2_min, double sw2_max, int n_sw2, double sb2_min,
                                          double sb2_max, int n_sb2, int quad_order,
                                          const ProgressFn& progress) {
  if (n_sw2 < 1 || n_sb2 < 1) throw ConfigError("phase diagram: grid sizes must be >= 1");
  const long long total = static_cast<long long>(n_sw2) * n_sb2;
  if (total > kMaxPhasePoints)
    throw ConfigError(fmt::format(
        "phase diagram: the grid of {} points (sigma_w2: {} x sigma_b2: {}) is more than the limit of {} points "
        "(docs/limits.md)",
        total, n_sw2, n_sb2, kMaxPhasePoints));
  if (!(sw2_min > 0) || sw2_max < sw2_min) throw ConfigError("phase diagram: need 0 < sigma_w2 min <= max");
  if (!(sb2_min >= 0) || sb2_max < sb2_min) throw ConfigError("phase diagram: need 0 <= sigma_b2 min <= max");
  std::vector<DenseMeanField> rows;
  rows.reserve(static_cast<std::size_t>(total));
  for (int j = 0; j < n_sb2; ++j) {
    for (int i = 0; i < n_sw2; ++i) {
      double sw2 = n_sw2 == 1 ? sw2_min : sw2_min + (sw2_max - sw2_min) * i / (n_sw2 - 1);
      double sb2 = n_sb2 == 1 ? sb2_min : sb2_min + (sb2_max - sb2_min) * j / (n_sb2 - 1);
      rows.push_back(dense_mean_field(act, sw2, sb2, quad_order));
      if (progress)
        report_progress(progress, static_cast<double>(rows.size()) / static_cast<double>(total),
                        fmt::format("point {}/{}", rows.size(), total), "phase");
    }
  }
  return rows;
}

std::string phase_diagram_csv(const std::vector<DenseMeanField>& rows, Activation act) {
  std::ostringstream o;
  o << "# sigprop phase diagram, blocks=dense, activation=" << to_string(act) << "\n";
  o << "sigma_w2,sigma_b2,q_star,chi1,c_star,chi_c,xi_q,xi_c,xi_grad,phase,trainable_depth\n";
  auto f = [](double x) { return std::isfinite(x) ? fmt::format("{:.12g}", x) : fmt::format("{}", x); };
  for (auto& r : rows)
    o << f(r.sigma_w2) << "," << f(r.sigma_b2) << "," << f(r.q_star) << "," << f(r.chi1) << "," << f(r.c_star) << ","
      << f(r.chi_c) << "," << f(r.xi_q) << "," << f(r.xi_c) << "," << f(r.xi_grad) << "," << r.phase << ","
      << f(r.trainable_depth()) << "\n";
  return o.str();
}

}  // namespace sigprop::theory
