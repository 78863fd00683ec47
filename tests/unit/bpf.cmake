# SPDX-License-Identifier: MIT OR Apache-2.0
ayaflow_unit_test(bpf_abi_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/bpf_abi_test.cpp
  LIBS ayaflow_skel ayaflow_bpf PkgConfig::LIBBPF ayaflow_common)
ayaflow_unit_test(link_layer_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/link_layer_test.cpp
  LIBS ayaflow_bpf)
