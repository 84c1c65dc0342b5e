#pragma once
/// @file SIGPROP_HD marks functions compiled for both host and device (pbrt-v4's PBRT_CPU_GPU):
/// `__host__ __device__` under nvcc, nothing under a host compiler, so the same maths
/// (core/hd_math.hpp) is unit-tested by g++ on the CPU and runs inside the CUDA kernels.
#if defined(__CUDACC__)
#define SIGPROP_HD __host__ __device__
#else
#define SIGPROP_HD
#endif
