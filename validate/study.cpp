// Statistics of the depth study (see study.hpp).
#include "validate/study.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <cmath>
#include <numeric>

#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/stats.hpp"

namespace sigprop::validate {

double PowerLawFit::operator()(double L) const { return a + b * std::pow(L, -c); }

namespace {
// (a, b, rss) of the linear least squares y ~ a + b x for x = L^-c.
PowerLawFit fit_at(std::span<const double> L, std::span<const double> y, double c) {
  const std::size_t n = L.size();
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double x = std::pow(L[i], -c);
    sx += x, sy += y[i], sxx += x * x, sxy += x * y[i];
  }
  PowerLawFit f;
  f.c = c;
  f.n = static_cast<int>(n);
  const double det = n * sxx - sx * sx;
  if (!(std::abs(det) > 1e-300)) {  // all depths equal: no slope
    f.a = sy / n;
    f.b = 0;
  } else {
    f.b = (n * sxy - sx * sy) / det;
    f.a = (sy - f.b * sx) / n;
  }
  for (std::size_t i = 0; i < n; ++i) f.rss += std::pow(y[i] - f(L[i]), 2);
  return f;
}
}  // namespace

PowerLawFit fit_power_law(std::span<const double> depth, std::span<const double> loss, double c_min, double c_max) {
  if (depth.size() != loss.size()) throw ConfigError("fit_power_law: depths and losses differ in number");
  if (depth.size() < 3) throw ConfigError("fit_power_law: needs at least 3 depths for 3 parameters");
  for (std::size_t i = 0; i < depth.size(); ++i) {
    if (!(depth[i] > 0)) throw ConfigError(fmt::format("fit_power_law: depth {} is not positive", depth[i]));
    if (!std::isfinite(loss[i])) throw ConfigError(fmt::format("fit_power_law: loss at depth {} is not finite", depth[i]));
  }
  // grid in log c, then golden section around the best grid point
  const int G = 200;
  double best_c = c_min, best = INFINITY;
  for (int i = 0; i <= G; ++i) {
    const double c = c_min * std::pow(c_max / c_min, static_cast<double>(i) / G);
    const double r = fit_at(depth, loss, c).rss;
    if (r < best) best = r, best_c = c;
  }
  const double step = std::pow(c_max / c_min, 1.0 / G);
  double lo = std::max(c_min, best_c / step), hi = std::min(c_max, best_c * step);
  const double g = (std::sqrt(5.0) - 1) / 2;
  double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
  double f1 = fit_at(depth, loss, x1).rss, f2 = fit_at(depth, loss, x2).rss;
  for (int it = 0; it < 100 && hi - lo > 1e-10 * hi; ++it) {
    if (f1 < f2) {
      hi = x2, x2 = x1, f2 = f1;
      x1 = hi - g * (hi - lo);
      f1 = fit_at(depth, loss, x1).rss;
    } else {
      lo = x1, x1 = x2, f1 = f2;
      x2 = lo + g * (hi - lo);
      f2 = fit_at(depth, loss, x2).rss;
    }
  }
  PowerLawFit f = fit_at(depth, loss, 0.5 * (lo + hi));
  if (!(f.rss <= best)) f = fit_at(depth, loss, best_c);
  f.degenerate = f.c <= c_min * (1 + 1e-6) || f.c >= c_max * (1 - 1e-6) || f.a < 0 || f.b < 0;
  return f;
}

namespace {
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;  // average rank of the tie group
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}
double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return (sxx > 0 && syy > 0) ? sxy / std::sqrt(sxx * syy) : 0.0;
}
}  // namespace

RankCorrelation spearman(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size()) throw ConfigError("spearman: the two series differ in length");
  std::vector<double> a, b;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) a.push_back(x[i]), b.push_back(y[i]);
  if (a.size() < 3) throw ConfigError(fmt::format("spearman: needs at least 3 finite pairs, got {}", a.size()));
  RankCorrelation r;
  r.n = static_cast<int>(a.size());
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  r.rho = pearson(ra, rb);
  if (r.n <= 8) {  // exact: the share of permutations of y's ranks at least as extreme
    std::vector<double> perm = rb;
    std::sort(perm.begin(), perm.end());
    long total = 0, extreme = 0;
    do {
      ++total;
      if (std::abs(pearson(ra, perm)) >= std::abs(r.rho) - 1e-12) ++extreme;
    } while (std::next_permutation(perm.begin(), perm.end()));
    r.p = static_cast<double>(extreme) / static_cast<double>(total);
  } else {
    const double df = r.n - 2;
    if (std::abs(r.rho) >= 1.0) {
      r.p = 0.0;
    } else {
      const double t = r.rho * std::sqrt(df / (1 - r.rho * r.rho));
      boost::math::students_t dist(df);
      r.p = 2 * boost::math::cdf(boost::math::complement(dist, std::abs(t)));
    }
  }
  return r;
}

template <class Real>
Ablation drop_one_layer(const Model<Real>& m, const Batch& seqs, int threads) {
  const int L = m.cfg.arch.spec.depth;
  const std::size_t N = seqs.inputs.size();
  if (N < 2) throw ConfigError("drop_one_layer: needs at least 2 sequences for a standard error");
  // Every sequence's mean loss with block `skip` removed (0: none); each value is computed
  // alone, so the thread count changes nothing.
  auto per_seq = [&](int skip) {
    std::vector<double> v(N);
    parallel_for(static_cast<int>(N), std::max(1, threads), [&](int i) {
      const Trace<Real> tr = forward(m, seqs.inputs[i], skip);
      v[i] = sequence_loss(tr, seqs.targets[i]) / static_cast<double>(seqs.targets[i].size());
    });
    return v;
  };
  const std::vector<double> base = per_seq(0);
  Ablation a;
  a.base_loss = mean_se(base).mean;
  for (int l = 1; l <= L; ++l) {
    const std::vector<double> s = per_seq(l);
    std::vector<double> diff(N);
    for (std::size_t i = 0; i < N; ++i) diff[i] = s[i] - base[i];
    const MeanSe d = mean_se(diff);
    a.increase.push_back(d.mean);
    a.increase_se.push_back(d.se);
  }
  return a;
}

template Ablation drop_one_layer(const Model<float>&, const Batch&, int);
template Ablation drop_one_layer(const Model<double>&, const Batch&, int);

MeanSe paired_gain(std::span<const double> before, std::span<const double> after) {
  if (before.size() != after.size() || before.empty())
    throw ConfigError(fmt::format("paired_gain: needs the same seeds at both depths (got {} and {} runs)",
                                  before.size(), after.size()));
  std::vector<double> d(before.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = before[i] - after[i];
  return mean_se(d);
}

CurveStats curve_stats(std::span<const double> loss, std::span<const double> gnorm, double last_fraction,
                       double spike_factor, int window) {
  if (!(last_fraction > 0 && last_fraction <= 1))
    throw ConfigError(fmt::format("curve_stats: last_fraction {} must be in (0, 1]", last_fraction));
  if (!(spike_factor > 1)) throw ConfigError(fmt::format("curve_stats: spike_factor {} must be > 1", spike_factor));
  if (window < 2) throw ConfigError(fmt::format("curve_stats: window {} must be >= 2", window));
  CurveStats c;
  const std::size_t n = loss.size();
  const std::size_t first = n - static_cast<std::size_t>(std::floor(last_fraction * static_cast<double>(n)));
  std::vector<double> diffs;
  for (std::size_t s = std::max<std::size_t>(first, 1); s < n; ++s)
    if (std::isfinite(loss[s]) && std::isfinite(loss[s - 1])) diffs.push_back(loss[s] - loss[s - 1]);
  if (diffs.size() >= 2) c.instability = mean_se(diffs).se * std::sqrt(static_cast<double>(diffs.size()));
  std::vector<double> before;
  for (std::size_t s = 0; s < gnorm.size(); ++s) {
    if (!std::isfinite(gnorm[s])) continue;
    if (static_cast<int>(before.size()) >= window / 2) {
      std::vector<double> w(before.end() - std::min<std::ptrdiff_t>(window, static_cast<std::ptrdiff_t>(before.size())),
                            before.end());
      std::nth_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(w.size() / 2), w.end());
      double med = w[w.size() / 2];
      if (w.size() % 2 == 0) med = 0.5 * (med + *std::max_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(w.size() / 2)));
      ++c.judged;
      if (gnorm[s] > spike_factor * med) ++c.spikes;
    }
    before.push_back(gnorm[s]);
  }
  if (c.judged > 0) c.spike_rate = static_cast<double>(c.spikes) / c.judged;
  return c;
}

double training_flops(double params, int depth, int context, int width, double tokens) {
  return 6.0 * params * tokens + 6.0 * depth * static_cast<double>(context) * width * tokens;
}

template <class Real>
std::vector<double> update_cosines(const Model<Real>& m, const Batch& seqs, int threads) {
  const int L = m.cfg.arch.spec.depth;
  if (L < 2) return {};
  const int N = static_cast<int>(seqs.inputs.size());
  // per sequence: the sum of cosines and the count of tokens, for every l; summed in order after
  std::vector<std::vector<double>> sum(N, std::vector<double>(L - 1, 0.0));
  std::vector<std::vector<double>> cnt(N, std::vector<double>(L - 1, 0.0));
  parallel_for(N, std::max(1, threads), [&](int i) {
    const Trace<Real> tr = forward(m, seqs.inputs[i], 0);
    for (int l = 1; l < L; ++l) {
      const auto u = (tr.X[l] - tr.X[l - 1]).template cast<double>().eval();
      const auto v = (tr.X[l + 1] - tr.X[l]).template cast<double>().eval();
      for (Eigen::Index t = 0; t < u.rows(); ++t) {
        const double nu = u.row(t).norm(), nv = v.row(t).norm();
        if (nu == 0 || nv == 0) continue;
        sum[i][l - 1] += u.row(t).dot(v.row(t)) / (nu * nv);
        cnt[i][l - 1] += 1;
      }
    }
  });
  std::vector<double> out(L - 1, 0.0);
  for (int l = 0; l < L - 1; ++l) {
    double s = 0, c = 0;
    for (int i = 0; i < N; ++i) s += sum[i][l], c += cnt[i][l];
    out[l] = c > 0 ? s / c : NAN;
  }
  return out;
}

template std::vector<double> update_cosines(const Model<float>&, const Batch&, int);
template std::vector<double> update_cosines(const Model<double>&, const Batch&, int);

double fit_through_origin(std::span<const double> x, std::span<const double> y) {
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) sxy += x[i] * y[i], sxx += x[i] * x[i];
  return sxx > 0 ? sxy / sxx : NAN;
}

}  // namespace sigprop::validate
