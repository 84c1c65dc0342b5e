// api::validate_checkpoint (include/sigprop/api.hpp): `sigprop validate` as a library call; the
// command line (cli/validate_cmd.cpp) runs detail::run_validation with its flags' names.
#include <utility>

#include <fmt/format.h>

#include "api/internal.hpp"
#include "core/error.hpp"
#include "sim/sample.hpp"
#include "validate/measure.hpp"

namespace sigprop::api {

namespace detail {

namespace {

template <class Real>
validate::Validation run_typed(const ValidateSettings& s, const validate::ValidateSettings& st,
                               const ProgressFn& progress, const ValidateNames& names) {
  // The measurement engine loads the checkpoint (a sigprop checkpoint or a Hugging Face folder)
  // and the corpus, naming a missing corpus before the model is loaded.
  const auto measure = validate::MeasureEngine<Real>::from_files(
      s.checkpoint, s.corpus, validate::MeasureSettings{st.tokens, st.seq_len, st.threads, st.checkpoint, st.corpus},
      names.checkpoint, names.corpus);
  return validate::validate_model(*measure, st, progress);
}

}  // namespace

validate::Validation run_validation(const ValidateSettings& s, const ProgressFn& progress, const ValidateNames& names) {
  // Settings first, files second: a bad setting is named before any file is read.
  validate::ValidateSettings st;
  if (s.tokens) st.tokens = *s.tokens;
  if (s.seq_len) st.seq_len = *s.seq_len;
  if (s.ensemble) st.ensemble = *s.ensemble;
  if (s.samples) st.samples = *s.samples;
  st.theory = s.theory;
  st.seed = s.seed;
  st.threads = s.threads;
  st.checkpoint = s.checkpoint;
  st.corpus = s.corpus;
  if (s.checkpoint.empty())
    throw ConfigError(fmt::format("{}: required (a sigprop safetensors checkpoint or a Hugging Face model folder)",
                                  names.checkpoint));
  if (s.corpus.empty()) throw ConfigError(fmt::format("{}: required (a text file)", names.corpus));
  if (st.tokens < 1) throw ConfigError(fmt::format("{}: must be >= 1, got {}", names.tokens, st.tokens));
  if (st.seq_len < 0)
    throw ConfigError(fmt::format("{}: must be >= 0 (0 = the context), got {}", names.seq_len, st.seq_len));
  if (st.ensemble < 0) throw ConfigError(fmt::format("{}: must be >= 0, got {}", names.ensemble, st.ensemble));
  if (st.samples < 0 || st.samples > sim::kMaxSamples)
    throw ConfigError(fmt::format("{}: must be in [0, {}] (0 = no simulate prediction), got {}", names.samples,
                                  sim::kMaxSamples, st.samples));
  if (st.threads < 0)
    throw ConfigError(fmt::format("{}: must be >= 0 (0 = all cores), got {}", names.threads, st.threads));
  if (s.precision.empty() || s.precision == "float") return run_typed<float>(s, st, progress, names);
  if (s.precision == "double") return run_typed<double>(s, st, progress, names);
  throw ConfigError(fmt::format("{}: expected \"\", \"float\" or \"double\", got \"{}\"", names.precision,
                                s.precision.substr(0, 80)));
}

}  // namespace detail

struct Validation::Impl {
  validate::Validation v;
  std::string checkpoint;
  Profile measured;
  std::optional<Profile> theory, simulate, init_ensemble;

  Impl(validate::Validation val, std::string ckpt)
      : v(std::move(val)), checkpoint(std::move(ckpt)), measured(detail::wrap_profile(v.measured)) {
    if (v.theory) theory = detail::wrap_profile(*v.theory);
    if (v.simulate) simulate = detail::wrap_profile(*v.simulate);
    if (v.init_ensemble) init_ensemble = detail::wrap_profile(*v.init_ensemble);
  }
};

Validation::Validation(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Validation::Validation(const Validation& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Validation::Validation(Validation&& other) noexcept = default;
Validation& Validation::operator=(const Validation& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
Validation& Validation::operator=(Validation&& other) noexcept = default;
Validation::~Validation() = default;

const Profile& Validation::measured() const {
  return impl_->measured;
}
const Profile* Validation::theory() const {
  return impl_->theory ? &*impl_->theory : nullptr;
}
const Profile* Validation::simulate() const {
  return impl_->simulate ? &*impl_->simulate : nullptr;
}
const Profile* Validation::init_ensemble() const {
  return impl_->init_ensemble ? &*impl_->init_ensemble : nullptr;
}
std::string Validation::model_json() const {
  return impl_->v.model.dump();
}
std::string Validation::agreement_json() const {
  return impl_->v.agreement.dump();
}
std::string Validation::summary_json() const {
  return impl_->v.summary.dump();
}
const std::vector<std::string>& Validation::notes() const {
  return impl_->v.notes;
}
std::span<const double> Validation::sequence_loss() const {
  return impl_->v.sequence_loss;
}
std::string Validation::to_json(int indent) const {
  return impl_->v.to_json(impl_->checkpoint).dump(indent);
}

Validation validate_checkpoint(const ValidateSettings& settings, const ProgressFn& progress) {
  validate::Validation v = detail::run_validation(settings, progress, detail::ValidateNames{});
  return Validation(std::make_unique<Validation::Impl>(std::move(v), settings.checkpoint));
}

}  // namespace sigprop::api
