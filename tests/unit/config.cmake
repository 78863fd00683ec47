# SPDX-License-Identifier: MIT OR Apache-2.0
# Config (flags/env/YAML) and CIDR parsing; included from tests/unit/CMakeLists.txt.
ayaflow_unit_test(ayaflow_config_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp
  LIBS ayaflow_config)
ayaflow_unit_test(ayaflow_cidr_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cidr_test.cpp
  LIBS ayaflow_common)

ayaflow_unit_test(config_docs_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_docs_test.cpp
  LIBS ayaflow_config)
target_compile_definitions(config_docs_test PRIVATE AYAFLOW_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
ayaflow_unit_test(ayaflow_memory_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/memory_test.cpp
  LIBS ayaflow_common)
