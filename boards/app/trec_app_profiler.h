/*
 * trec-tflm firmware app: per-operator profiler for TFLM (MicroProfilerInterface) on board_ticks().
 *
 * TFLM calls BeginEvent(op name) / EndEvent() around every operator's Eval. The profiler keeps the
 * ticks of the last inference (Reset() before each one), minus the cost of one empty Begin/End pair
 * measured at construction, so an entry is the operator's own ticks (instructions on QEMU, cycles
 * on the STM32 boards). For TREC_CONV_2D it also keeps the reuse statistics of that evaluation,
 * which it asks the node the event timed (tflite::TrecConv2DReuseStats; the statistics live in the
 * node's OpData): set_graph() gives it the interpreter's graph, whose current operator during
 * EndEvent is the one just timed.
 */
#ifndef TREC_APP_PROFILER_H_
#define TREC_APP_PROFILER_H_

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/micro/micro_interpreter_graph.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "trec/trec_nnfunctions.h"

#ifndef TREC_APP_MAX_EVENTS
#define TREC_APP_MAX_EVENTS 128
#endif

class TrecAppProfiler : public tflite::MicroProfilerInterface {
 public:
  TrecAppProfiler();
  uint32_t BeginEvent(const char* tag) override;
  void EndEvent(uint32_t event_handle) override;

  // The graph whose operators the events time; without it no reuse statistics are kept.
  void set_graph(tflite::MicroInterpreterGraph* graph) { graph_ = graph; }
  void Reset() { count_ = 0; }
  size_t count() const { return count_; }
  const char* name(size_t i) const { return i < count_ ? tags_[i] : nullptr; }
  uint64_t ticks(size_t i) const;
  // Reuse statistics of event i when it was a TREC_CONV_2D (else nullptr).
  const trec_reuse_stats* reuse(size_t i) const;
  uint64_t overhead() const { return overhead_; }

 private:
  const char* tags_[TREC_APP_MAX_EVENTS];
  uint64_t start_[TREC_APP_MAX_EVENTS];
  uint64_t end_[TREC_APP_MAX_EVENTS];
  trec_reuse_stats reuse_[TREC_APP_MAX_EVENTS];
  bool is_trec_[TREC_APP_MAX_EVENTS];
  size_t count_ = 0;
  uint64_t overhead_ = 0;
  tflite::MicroInterpreterGraph* graph_ = nullptr;
};

#endif  // TREC_APP_PROFILER_H_
