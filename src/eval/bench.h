/* bench.h: internals of the benchmarks (the public entry points are qn_bench_model and
 * qn_bench_machine in quench.h): the accounting of one forward pass's work, and the
 * machine-limit microbenchmarks, exposed for tests and for bench/ programs. */
#ifndef QN_EVAL_BENCH_H
#define QN_EVAL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/threadpool.h"
#include "quench.h"

/* Bytes of weights one decode step reads: every stored tensor (payload, scales, zeros, norm
 * vectors) except the token embedding, whose single looked-up row is left out; when the
 * head is tied to the embedding, the embedding counts once as the head. */
uint64_t qn_bench_bytes_per_token(const qn_model* m);

/* Weights of the linear layers of all decoder blocks (q, k, v, o, gate, up, down). */
int64_t qn_bench_layer_matmul_params(const qn_model* m);
/* Weights of the output head (vocab x dim). */
int64_t qn_bench_head_params(const qn_model* m);
/* True when any weight of the model takes int8 activations (w8a8-*, w4a8): its prefill is
 * measured against the VNNI peak, other models against the FP32 FMA peak. */
bool qn_bench_int8_activations(const qn_model* m);

/* Best read bandwidth in GB/s (1e9 bytes/s) over passes full reads of buf (bytes long, 64-byte
 * aligned, already touched), split into one contiguous slice per worker of pool. */
double qn_bench_read_gbps(qn_pool* pool, const void* buf, size_t bytes, int passes);

/* Register-only peak loops, all workers of pool at once, best of 3 timed runs of about
 * seconds each: int8 dot products with vpdpbusd (512-bit, 128 ops per instruction: 64
 * multiply-adds), and FP32 fused multiply-adds (2 flops per lane). Return 0 when the CPU
 * lacks the instructions; *isa names the FMA width used ("avx512", "avx2" or "none"). */
double qn_bench_vnni_gops(qn_pool* pool, double seconds);
double qn_bench_fma_gflops(qn_pool* pool, double seconds, const char** isa);

/* The p-quantile (0..1) of x[0..n) by nearest rank (sorts x in place); 0 when n == 0. */
double qn_bench_quantile(double* x, int n, double p);

#endif
