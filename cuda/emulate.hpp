#pragma once
/// @file A host emulation of the CUDA runtime, cuBLAS and cuSOLVER calls that
/// cuda/cuda_backend.cpp makes, for testing that orchestration without a GPU. Compiled into
/// the test-only library sigprop_cuda_emu (cuda/CMakeLists.txt): cuda_backend.cpp built a
/// second time with SIGPROP_CUDA_EMULATE, in namespace sigprop::cuda_emu, against these
/// functions and the host kernels of cuda/kernels_emu.cpp. So the shared parity tests run the
/// backend's real buffer layouts, GEMM operands, transposes, strides and batching against
/// the reference on every machine; only the .cu kernels' thread layout is not exercised.
///
/// Each function follows the documented semantics of the real one, independently of how the
/// backend uses it: the GEMMs are column-major with cuBLAS's (m, n, k, op, ld, stride)
/// meaning, computed with double accumulation (TF32 compute rounds the inputs to 10 mantissa
/// bits first); the batched eigensolver reads the lower triangle of each column-major matrix.
/// "Device" memory is host memory.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_backend.hpp"

namespace sigprop::cuda_emu {

using cuda::DeviceInfo;
DeviceInfo device_info();
const std::vector<std::string>& precisions();
int batch_size_for(const StackSpec& spec);
/// The emulated backend (backend() says "cuda"); the spec must already be validated.
std::unique_ptr<sim::StackBackend> make_backend(const StackSpec& spec, uint64_t seed, const std::string& precision);

// ---- CUDA runtime -----------------------------------------------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  std::size_t totalGlobalMem;
};
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaMalloc(void** p, std::size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes);

// ---- cuBLAS -----------------------------------------------------------------------------------
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_64F = 1 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
enum cublasFillMode_t { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 };
struct EmuBlas {};
using cublasHandle_t = EmuBlas*;
const char* cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasCreate(cublasHandle_t* h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
/// C_i = alpha op(A_i) op(B_i) + beta C_i, column-major, (m, n) = shape of C, k the inner size;
/// A_i = A + i strideA etc. Float data only (the backend's use).
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                                          long long strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo);
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long strideA,
                                         const double* B, int ldb, long long strideB, const double* beta, double* C,
                                         int ldc, long long strideC, int batch);

// ---- cuSOLVER ---------------------------------------------------------------------------------
enum cusolverStatus_t { CUSOLVER_STATUS_SUCCESS = 0, CUSOLVER_STATUS_INVALID_VALUE = 3 };
enum cusolverEigMode_t { CUSOLVER_EIG_MODE_NOVECTOR = 0, CUSOLVER_EIG_MODE_VECTOR = 1 };
struct EmuSolver {};
struct EmuSolverParams {};
using cusolverDnHandle_t = EmuSolver*;
using cusolverDnParams_t = EmuSolverParams*;
cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* h);
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h);
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t* p);
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t p);
cusolverStatus_t cusolverDnXsyevBatched_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p, cusolverEigMode_t jobz,
                                                   cublasFillMode_t uplo, int64_t n, cudaDataType Atype, const void* A,
                                                   int64_t lda, cudaDataType Wtype, const void* W,
                                                   cudaDataType compute, std::size_t* dev_bytes,
                                                   std::size_t* host_bytes, int64_t batch);
/// Eigenvalues (ascending) of each symmetric n x n column-major A_i (lower triangle read) into W.
cusolverStatus_t cusolverDnXsyevBatched(cusolverDnHandle_t h, cusolverDnParams_t p, cusolverEigMode_t jobz,
                                        cublasFillMode_t uplo, int64_t n, cudaDataType Atype, void* A, int64_t lda,
                                        cudaDataType Wtype, void* W, cudaDataType compute, void* dev_work,
                                        std::size_t dev_bytes, void* host_work, std::size_t host_bytes, int* info,
                                        int64_t batch);

}  // namespace sigprop::cuda_emu
