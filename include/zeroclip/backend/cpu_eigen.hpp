//! Where the CPU backend lived in 0.1; it is backend/cpu/cpu_backend.hpp now (zeroclip::cpu_backend,
//! still reachable as zeroclip::cpu_eigen). Kept so existing includes compile.
#pragma once

#include "cpu/cpu_backend.hpp"
