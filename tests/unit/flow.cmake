# SPDX-License-Identifier: MIT OR Apache-2.0
# Unit tests of the flow layer (decoding, keys, connection map). Included by CMakeLists.txt.
ayaflow_unit_test(flow_decode_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/flow_decode_test.cpp
  LIBS ayaflow_flow)
ayaflow_unit_test(flow_key_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/flow_key_test.cpp
  LIBS ayaflow_flow)
ayaflow_unit_test(flow_connection_map_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/flow_connection_map_test.cpp
  LIBS ayaflow_flow Threads::Threads)
