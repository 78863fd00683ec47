# SPDX-License-Identifier: MIT OR Apache-2.0
# Configuration: CLI11 flags + AYAFLOW_* env vars + YAML file -> ayaflow::app::Config.
# CLI11 and yaml-cpp stay private: only config.cpp includes them.
add_library(ayaflow_config STATIC ${CMAKE_CURRENT_LIST_DIR}/config.cpp)
target_include_directories(ayaflow_config PUBLIC ${AYAFLOW_INCLUDE_DIR})
target_link_libraries(ayaflow_config PUBLIC ayaflow_common PRIVATE yaml-cpp CLI11::CLI11)
target_compile_definitions(ayaflow_config PRIVATE AYAFLOW_VERSION="${PROJECT_VERSION}")
