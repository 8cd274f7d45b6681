/* trec-tflm firmware app: per-operator profiler (see trec_app_profiler.h). */
#include "trec_app_profiler.h"

#include <string.h>

#include "board.h"
#include "trec_conv.h"

TrecAppProfiler::TrecAppProfiler() {
  // Calibrate: an empty event measures the profiler's own cost (board_ticks() and the
  // bookkeeping); take the smallest of a few.
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 4; ++i) {
    Reset();
    EndEvent(BeginEvent("calibration"));
    const uint64_t t = end_[0] - start_[0];
    if (t < best) best = t;
  }
  overhead_ = best;
  Reset();
}

uint32_t TrecAppProfiler::BeginEvent(const char* tag) {
  if (count_ >= TREC_APP_MAX_EVENTS) {
    return UINT32_MAX;  // dropped: more operators than events
  }
  const size_t i = count_++;
  tags_[i] = tag;
  is_trec_[i] = false;
  start_[i] = board_ticks();
  return static_cast<uint32_t>(i);
}

void TrecAppProfiler::EndEvent(uint32_t event_handle) {
  const uint64_t now = board_ticks();
  if (event_handle >= count_) return;
  end_[event_handle] = now;
  if (graph_ == nullptr) return;
  // TFLM ends an operator's event before it moves on: the graph's current operator is the one
  // this event timed.
  const int subgraph = graph_->GetCurrentSubgraphIndex();
  const int op = graph_->GetCurrentOperatorIndex();
  const tflite::SubgraphAllocations* allocations = graph_->GetAllocations();
  if (allocations == nullptr || subgraph < 0 || subgraph >= graph_->NumSubgraphs() || op < 0) {
    return;
  }
  const tflite::NodeAndRegistration& nr = allocations[subgraph].node_and_registrations[op];
  if (nr.registration == nullptr) return;
  const trec_reuse_stats* stats = tflite::TrecConv2DReuseStats(*nr.registration, nr.node);
  if (stats != nullptr) {
    is_trec_[event_handle] = true;
    reuse_[event_handle] = *stats;
  }
}

uint64_t TrecAppProfiler::ticks(size_t i) const {
  if (i >= count_) return 0;
  const uint64_t t = end_[i] - start_[i];
  return t > overhead_ ? t - overhead_ : 0;
}

const trec_reuse_stats* TrecAppProfiler::reuse(size_t i) const {
  return (i < count_ && is_trec_[i]) ? &reuse_[i] : nullptr;
}
