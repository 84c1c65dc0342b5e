#pragma once
/// @file SIGPROP_API: marks what libsigprop.so exports. The library is built with hidden
/// visibility, so only declarations carrying this macro (the public API under include/sigprop/)
/// are callable from a consumer; everything else stays internal and free to change.
#if defined(_WIN32)
#define SIGPROP_API
#else
#define SIGPROP_API __attribute__((visibility("default")))
#endif
