// reports::snapshot (reports/report.hpp): the complete cells of a report whose run may still be
// going, read from its cells/ folder without writing anything there (docs/report.md "Snapshots").
#include <map>
#include <utility>

#include <fmt/format.h>

#include "core/error.hpp"
#include "reports/atlas.hpp"
#include "reports/report.hpp"

namespace sigprop::reports {

Snapshot snapshot(const ReportConfig& cfg, const std::vector<Cell>& cells, const std::vector<Job>& jobs,
                  const std::filesystem::path& out) {
  Snapshot s;
  s.cells_total = static_cast<int>(cells.size());
  s.jobs_total = static_cast<int>(jobs.size());
  std::vector<char> done(jobs.size(), 0), complete(cells.size(), 1);
  for (size_t i = 0; i < jobs.size(); ++i) {
    done[i] = job_done(out, jobs[i]) ? 1 : 0;
    s.jobs_done += done[i];
    if (!done[i]) complete.at(jobs[i].cell) = 0;
  }
  const int first_done = s.jobs_done;
  std::vector<const Job*> use;
  for (size_t i = 0; i < jobs.size(); ++i)
    if (done[i] && complete[jobs[i].cell]) use.push_back(&jobs[i]);

  // An atlas plans its refinement from the complete first pass (as the run does, so the same jobs
  // and hashes); a doubling step pools with the earlier ones, so it counts only after all of them.
  std::vector<Job> more;
  const bool refine_on = cfg.atlas.enabled && (cfg.atlas.refine > 1 || cfg.atlas.refine_theory > 1);
  int more_done = 0, more_used = 0;
  if (refine_on && first_done == s.jobs_total) {
    more = atlas_refine_jobs(cfg, cells, jobs, out);
    s.refinement_planned = true;
    s.jobs_total += static_cast<int>(more.size());
    std::map<std::pair<int, int>, bool> gap;  // (cell, width): an earlier step is missing
    // atlas_refine_jobs makes a width's steps one after the other, in order of their first sample.
    for (const Job& j : more) {
      const bool d = job_done(out, j);
      more_done += d;
      if (j.engine == EngineKind::Simulate) {
        bool& g = gap[{j.cell, j.spec.width}];
        if (g || !d) {
          g = true;
          continue;
        }
      } else if (!d) {
        continue;
      }
      use.push_back(&j);
      ++more_used;
    }
    s.jobs_done += more_done;
  }

  std::vector<int> renumber(cells.size(), -1);
  for (const Cell& c : cells) {
    if (!complete[c.index]) continue;
    renumber[c.index] = static_cast<int>(s.cells.size());
    s.cells.push_back(c);
    s.cells.back().index = renumber[c.index];
  }
  const bool atlas = cfg.atlas.enabled;
  const char* what = atlas ? "configurations" : "cells";
  if (s.cells.empty())
    throw ConfigError(fmt::format("{}: no {} complete yet ({} of {} jobs of this config done; cells of another config "
                                  "do not count): nothing to show in a snapshot",
                                  (out / "cells").string(), atlas ? "configuration" : "cell", s.jobs_done,
                                  s.jobs_total));
  for (const Job* j : use) {
    s.jobs.push_back(*j);
    s.jobs.back().cell = renumber.at(j->cell);
  }
  s.jobs_used = static_cast<int>(s.jobs.size());

  std::string refinement;
  if (refine_on && !s.refinement_planned)
    refinement = " The atlas's refinement is planned once its first pass is complete; none of it is here yet.";
  else if (s.refinement_planned)
    refinement = fmt::format(
        " Refinement: {} of {} jobs done, {} of them used (a doubling step of a width's samples is pooled only after "
        "the earlier steps).",
        more_done, more.size(), more_used);
  s.notice = fmt::format(
      "Snapshot of a report in progress: {} of {} jobs done{}; {} of {} {} complete and shown here, the others left "
      "out.{} Rerun with --snapshot for a newer one; the run itself writes the full report.",
      s.jobs_done, s.jobs_total, s.refinement_planned || !refine_on ? "" : " in the first pass", s.cells.size(),
      s.cells_total, what, refinement);
  return s;
}

}  // namespace sigprop::reports
