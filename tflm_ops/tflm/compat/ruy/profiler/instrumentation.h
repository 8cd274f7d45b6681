/*
 * trec-tflm: stand-in for ruy's profiler header, which TFLite's reference kernels include
 * ("ruy/profiler/instrumentation.h") only to construct scope labels. With ruy's profiler
 * disabled (always, on microcontrollers) a label does nothing; this header provides exactly that,
 * so a TFLM build needs no ruy checkout. tflm_ops/tflm.mk uses it unless RUY_ROOT is given.
 */
#ifndef TREC_TFLM_COMPAT_RUY_PROFILER_INSTRUMENTATION_H_
#define TREC_TFLM_COMPAT_RUY_PROFILER_INSTRUMENTATION_H_

namespace ruy {
namespace profiler {

class ScopeLabel {
 public:
  template <typename... Args>
  explicit ScopeLabel(Args&&...) {}
  ScopeLabel(const ScopeLabel&) = delete;
  ScopeLabel& operator=(const ScopeLabel&) = delete;
};

}  // namespace profiler
}  // namespace ruy

#endif  // TREC_TFLM_COMPAT_RUY_PROFILER_INSTRUMENTATION_H_
