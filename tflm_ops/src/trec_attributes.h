/*
 * trec-tflm: the compiler attributes of the kernels, in one place (not a public header).
 *
 *   TREC_INLINE       static inline, always inlined: the per-element helpers of the inner loops
 *   TREC_NOINLINE     never inlined: hot loops kept out of line, because inlined into one large
 *                     function they share its registers and spill in the inner loops
 *   TREC_INTERNAL     a function shared between the kernel's files, hidden from the shared
 *                     library's exports (the host build)
 *   TREC_RESTRICT     restrict
 *   TREC_LIKELY(x), TREC_UNLIKELY(x)   branch hints
 */
#ifndef TREC_ATTRIBUTES_H
#define TREC_ATTRIBUTES_H

#if defined(__GNUC__) || defined(__clang__)
#define TREC_INLINE static inline __attribute__((always_inline))
#define TREC_NOINLINE __attribute__((noinline))
#define TREC_INTERNAL __attribute__((visibility("hidden")))
#define TREC_RESTRICT __restrict
#define TREC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TREC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TREC_INLINE static inline
#define TREC_NOINLINE
#define TREC_INTERNAL
#define TREC_RESTRICT
#define TREC_LIKELY(x) (x)
#define TREC_UNLIKELY(x) (x)
#endif

#endif /* TREC_ATTRIBUTES_H */
