#include "cli/table.hpp"

#include <cmath>
#include <set>

#include <fmt/format.h>

namespace sigprop::cli {

std::string format_table(const Profile& p, int max_rows, const std::string& se_label) {
  std::string out;
  const auto& names = metric_names();
  out += fmt::format("{:>6}", "layer");
  for (auto& n : names) out += fmt::format(" {:>13}", n);
  out += "\n";
  std::set<int> rows;
  int L = p.layers() - 1;
  if (max_rows <= 0 || L + 1 <= max_rows) {
    for (int l = 0; l <= L; ++l) rows.insert(l);
  } else {
    for (int i = 0; i < max_rows; ++i)
      rows.insert(static_cast<int>(std::lround(static_cast<double>(i) * L / (max_rows - 1))));
  }
  for (int l : rows) {
    out += fmt::format("{:>6}", l);
    for (auto& n : names) {
      double v = p.has(n) ? p.at(l, n) : std::nan("");
      out += std::isfinite(v) ? fmt::format(" {:>13.6g}", v) : fmt::format(" {:>13}", "-");
    }
    out += "\n";
  }
  bool has_se = false;
  for (auto& n : names) has_se |= p.has(n + "_se");
  if (has_se) {
    double worst = 0;
    std::string which;
    for (auto& n : names) {
      if (!p.has(n + "_se")) continue;
      for (int l = 0; l <= L; ++l) {
        double v = p.at(l, n), se = p.at(l, n + "_se");
        if (std::isfinite(v) && std::isfinite(se) && std::abs(v) > 1e-12 && se / std::abs(v) > worst) {
          worst = se / std::abs(v);
          which = fmt::format("{} at layer {}", n, l);
        }
      }
    }
    if (!which.empty())
      out +=
          fmt::format("{}: largest relative {:.2e} ({}); full _se columns in --json/--csv\n", se_label, worst, which);
  }
  return out;
}

}  // namespace sigprop::cli
