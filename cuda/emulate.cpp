// Host emulation of the CUDA runtime / cuBLAS / cuSOLVER subset (see emulate.hpp).
#include "cuda/emulate.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <Eigen/Dense>

namespace sigprop::cuda_emu {

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "out of memory (emulated)"; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorMemoryAllocation"; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int /*device*/) {
  std::memset(p, 0, sizeof(*p));
  std::strncpy(p->name, "host emulation", sizeof(p->name) - 1);
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = std::size_t{16} << 30;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int /*device*/) { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  *p = std::malloc(bytes);
  if (!*p) return cudaErrorMemoryAllocation;
  // Poison: a kernel that reads memory nobody wrote sees NaN (0xffffffff is a NaN as float and double).
  std::memset(*p, 0xff, bytes);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind /*kind*/) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  *free_bytes = *total_bytes = std::size_t{16} << 30;
  return cudaSuccess;
}

const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "success" : "invalid value (emulated)";
}
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  static EmuBlas blas;
  *h = &blas;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t /*h*/) { return CUBLAS_STATUS_SUCCESS; }

namespace {

// x rounded to TF32 (1 + 8 + 10 bits), round to nearest even, as the tensor cores consume FP32 inputs.
float to_tf32(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t u = 0;
  std::memcpy(&u, &x, 4);
  u += 0xfffu + ((u >> 13) & 1u);
  u &= ~0x1fffu;
  float y = 0;
  std::memcpy(&y, &u, 4);
  return y;
}

// Column-major op(M)(i, j) of a matrix stored with leading dimension ld.
template <class T>
T at(const T* M, cublasOperation_t op, int ld, int i, int j) {
  return op == CUBLAS_OP_N ? M[static_cast<std::size_t>(j) * ld + i] : M[static_cast<std::size_t>(i) * ld + j];
}

template <class T, class Round>
bool gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha, const T* A, int lda,
                  long long sA, const T* B, int ldb, long long sB, T beta, T* C, int ldc, long long sC, int batch,
                  Round round) {
  // cuBLAS's argument checks: leading dimensions at least the stored rows
  if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m || m < 0 || n < 0 || k < 0)
    return false;
  for (int b = 0; b < batch; ++b) {
    const T* Ab = A + sA * b;
    const T* Bb = B + sB * b;
    T* Cb = C + sC * b;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int p = 0; p < k; ++p)
          acc += static_cast<double>(round(at(Ab, ta, lda, i, p))) * static_cast<double>(round(at(Bb, tb, ldb, p, j)));
        T& c = Cb[static_cast<std::size_t>(j) * ldc + i];
        // beta = 0: C is not read (it may hold NaN), as cuBLAS specifies
        c = static_cast<T>(alpha * acc + (beta == T(0) ? 0.0 : static_cast<double>(beta) * c));
      }
  }
  return true;
}

}  // namespace

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t /*h*/, cublasOperation_t ta, cublasOperation_t tb, int m,
                                          int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                                          long long strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t /*algo*/) {
  if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F) return CUBLAS_STATUS_INVALID_VALUE;
  const bool tf32 = compute == CUBLAS_COMPUTE_32F_FAST_TF32;
  const bool ok = gemm_batched<float>(
      ta, tb, m, n, k, *static_cast<const float*>(alpha), static_cast<const float*>(A), lda, strideA,
      static_cast<const float*>(B), ldb, strideB, *static_cast<const float*>(beta), static_cast<float*>(C), ldc,
      strideC, batch, [tf32](float x) { return tf32 ? to_tf32(x) : x; });
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t /*h*/, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long strideA,
                                         const double* B, int ldb, long long strideB, const double* beta, double* C,
                                         int ldc, long long strideC, int batch) {
  const bool ok = gemm_batched<double>(ta, tb, m, n, k, *alpha, A, lda, strideA, B, ldb, strideB, *beta, C, ldc,
                                       strideC, batch, [](double x) { return x; });
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* h) {
  static EmuSolver s;
  *h = &s;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t /*h*/) { return CUSOLVER_STATUS_SUCCESS; }
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t* p) {
  static EmuSolverParams params;
  *p = &params;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t /*p*/) { return CUSOLVER_STATUS_SUCCESS; }

cusolverStatus_t cusolverDnXsyevBatched_bufferSize(cusolverDnHandle_t /*h*/, cusolverDnParams_t /*p*/,
                                                   cusolverEigMode_t /*jobz*/, cublasFillMode_t /*uplo*/, int64_t n,
                                                   cudaDataType /*Atype*/, const void* /*A*/, int64_t lda,
                                                   cudaDataType /*Wtype*/, const void* /*W*/, cudaDataType /*compute*/,
                                                   std::size_t* dev_bytes, std::size_t* host_bytes, int64_t batch) {
  if (lda < n) return CUSOLVER_STATUS_INVALID_VALUE;
  *dev_bytes = static_cast<std::size_t>(8 * n * batch);  // something to allocate, as the real one asks
  *host_bytes = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevBatched(cusolverDnHandle_t /*h*/, cusolverDnParams_t /*p*/, cusolverEigMode_t jobz,
                                        cublasFillMode_t uplo, int64_t n, cudaDataType Atype, void* A, int64_t lda,
                                        cudaDataType Wtype, void* W, cudaDataType /*compute*/, void* /*dev_work*/,
                                        std::size_t /*dev_bytes*/, void* /*host_work*/, std::size_t /*host_bytes*/,
                                        int* info, int64_t batch) {
  if (Atype != CUDA_R_64F || Wtype != CUDA_R_64F || lda < n || jobz != CUSOLVER_EIG_MODE_NOVECTOR)
    return CUSOLVER_STATUS_INVALID_VALUE;
  auto* a = static_cast<double*>(A);
  auto* w = static_cast<double*>(W);
  for (int64_t b = 0; b < batch; ++b) {
    const double* M = a + b * lda * n;
    Eigen::MatrixXd S(n, n);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        // only the named triangle is read: the other is taken from it
        const bool in_lower = i >= j;
        const bool use = uplo == CUBLAS_FILL_MODE_LOWER ? in_lower : !in_lower || i == j;
        S(i, j) = use ? M[j * lda + i] : M[i * lda + j];
      }
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S, Eigen::EigenvaluesOnly);
    for (int64_t i = 0; i < n; ++i) w[b * n + i] = es.eigenvalues()(i);
    info[b] = es.info() == Eigen::Success ? 0 : 1;
  }
  return CUSOLVER_STATUS_SUCCESS;
}

}  // namespace sigprop::cuda_emu
