#pragma once
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS, so C++ would mangle its names.
extern "C" {
#include <sys/pidfd.h>
}
