# SPDX-License-Identifier: MIT OR Apache-2.0
#
# ayaflow_add_bpf_object(<target> SOURCE <file.bpf.c> NAME <skel name> [DEPENDS ...])
#
# Compiles a BPF C file with clang -target bpf and turns the object into a
# libbpf skeleton header (<name>.skel.h) in the build tree. <target> is an
# INTERFACE library whose include directory holds the skeleton: linking it
# embeds the BPF ELF in the binary, so nothing is read from disk at run time.

find_program(AYAFLOW_BPF_CLANG NAMES clang clang-14 clang-15 clang-16 REQUIRED)
find_program(AYAFLOW_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(AYAFLOW_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(AYAFLOW_BPF_ARCH arm64)
else()
  set(AYAFLOW_BPF_ARCH ${CMAKE_SYSTEM_PROCESSOR})
endif()

execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
  OUTPUT_VARIABLE AYAFLOW_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)

function(ayaflow_add_bpf_object target)
  cmake_parse_arguments(ARG "" "SOURCE;NAME" "DEPENDS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${ARG_NAME}.bpf.o)
  set(skel ${out_dir}/${ARG_NAME}.skel.h)
  set(sys_inc)
  if(AYAFLOW_MULTIARCH)
    list(APPEND sys_inc -idirafter /usr/include/${AYAFLOW_MULTIARCH})
  endif()
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${AYAFLOW_BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${AYAFLOW_BPF_ARCH}
            -Wall -Wno-unused-function
            -I${AYAFLOW_INCLUDE_DIR} -I${CMAKE_CURRENT_SOURCE_DIR}/bpf ${sys_inc}
            -c ${ARG_SOURCE} -o ${obj}
    DEPENDS ${ARG_SOURCE} ${ARG_DEPENDS}
    COMMENT "BPF ${ARG_NAME}: clang -target bpf"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${AYAFLOW_BPFTOOL} gen skeleton ${obj} name ${ARG_NAME} > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "BPF ${ARG_NAME}: bpftool gen skeleton"
    VERBATIM)
  add_custom_target(${target}_gen DEPENDS ${skel})
  add_library(${target} INTERFACE)
  target_include_directories(${target} INTERFACE ${out_dir})
  add_dependencies(${target} ${target}_gen)
endfunction()
