"""Why the attention backward pass centres K (docs/theory.md "Lost precision").

The query path of the sampled attention's backward pass, E[tr(J_t K J_t' K)], is expanded in
theory/attention.cpp into matrix products of the softmax matrix A and K:
    A (K o K) A^T - A (P o P) - (A (P o P))^T + AKA o AKA,   P = K A^T, AKA = A K A^T.
With K = q 11^T + E (tokens aligned in a stream that grows without a norm) the terms are of size
q^2 and cancel down to |E|^2. Because J_t 1 = 0, the doubly centred H K H (H = I - 11^T/T) gives
the same value in exact arithmetic; this script measures both expansions in float64 against the
cancellation-free sum  sum_su a_ts a_t'u M_su^2,  M = (I - 1 a_t^T) E (I - a_t' 1^T).

    python3 tools/attn_centring_check.py        (numpy only; prints one line per q)
"""
import numpy as np


def expanded(A, K):
    P = K @ A.T
    AKA = A @ K @ A.T
    return A @ (K * K) @ A.T - A @ (P * P) - (A @ (P * P)).T + AKA * AKA


def cancellation_free(A, K):
    T = K.shape[0]
    out = np.zeros((T, T))
    for t in range(T):
        for u in range(T):
            M = K - (K @ A[u])[:, None] - (K @ A[t])[None, :] + A[t] @ K @ A[u]
            out[t, u] = np.sum(A[t][:, None] * A[u][None, :] * M * M)
    return out


def main():
    rng = np.random.default_rng(1)
    T = 10
    X = rng.standard_normal((T, T))
    E = X @ X.T / T
    H = np.eye(T) - 1.0 / T
    for q in [1e3, 1e8, 1e14]:
        K = q * np.ones((T, T)) + E
        S = 3 * rng.standard_normal((T, T))
        A = np.exp(S - S.max(1, keepdims=True))
        A /= A.sum(1, keepdims=True)
        ref = cancellation_free(A, E)  # the common mode drops out exactly
        err = {name: np.max(np.abs(expanded(A, k) - ref)) / np.max(np.abs(ref)) for name, k in
               [("K", K), ("HKH", H @ K @ H)]}
        print(f"q = {q:.0e}: largest error / largest entry, expanded with K {err['K']:.2g}, with HKH {err['HKH']:.2g}")


if __name__ == "__main__":
    main()
