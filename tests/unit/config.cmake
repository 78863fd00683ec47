# SPDX-License-Identifier: MIT OR Apache-2.0
# Config (flags/env/YAML) and CIDR parsing; included from tests/unit/CMakeLists.txt.
ayaflow_unit_test(ayaflow_config_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp
  LIBS ayaflow_config)
ayaflow_unit_test(ayaflow_cidr_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cidr_test.cpp
  LIBS ayaflow_common)
