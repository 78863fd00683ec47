# SPDX-License-Identifier: MIT OR Apache-2.0
#
# ayaflow_add_bpf_object(<target> SOURCE <file.bpf.c> NAME <skel name>
#                        [INCLUDES <dir>...] [DEFINES <NAME[=VALUE]>...] [DEPENDS <file>...])
#
# Compiles a BPF C file with clang -target bpf and turns the object into a
# libbpf skeleton header (<name>.skel.h, struct <name>) in the build tree.
# <target> is an INTERFACE library whose include directory holds the
# skeleton: linking it embeds the BPF ELF in the binary, so nothing is read
# from disk at run time. Call it once per object: each gets its own object
# file, skeleton and target, so the classifier and tracing objects build
# side by side.
#
# Include order: the shared ABI headers (include/), bpf/ (so "lib/parse.h"
# resolves from any subdirectory), the source's own directory, INCLUDES
# (for example the directory of a CO-RE kernel types header), and last the
# host's multiarch directory for <asm/types.h>. Headers are tracked through
# clang's dependency file; DEPENDS lists them as well (and anything else the
# build must wait for).

find_program(AYAFLOW_BPF_CLANG NAMES clang clang-14 clang-15 clang-16 REQUIRED)
find_program(AYAFLOW_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

get_filename_component(AYAFLOW_BPF_SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR}/../bpf ABSOLUTE)
get_filename_component(AYAFLOW_BPF_ABI_INCLUDE_DIR ${CMAKE_CURRENT_LIST_DIR}/../include ABSOLUTE)

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
  cmake_parse_arguments(ARG "" "SOURCE;NAME" "INCLUDES;DEFINES;DEPENDS" ${ARGN})
  if(NOT ARG_SOURCE OR NOT ARG_NAME)
    message(FATAL_ERROR "ayaflow_add_bpf_object(${target}): SOURCE and NAME are required")
  endif()
  get_filename_component(source ${ARG_SOURCE} ABSOLUTE)
  get_filename_component(source_dir ${source} DIRECTORY)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${ARG_NAME}.bpf.o)
  set(skel ${out_dir}/${ARG_NAME}.skel.h)
  set(flags -I${AYAFLOW_BPF_ABI_INCLUDE_DIR} -I${AYAFLOW_BPF_SOURCE_DIR})
  if(NOT source_dir STREQUAL AYAFLOW_BPF_SOURCE_DIR)
    list(APPEND flags -I${source_dir})
  endif()
  foreach(dir IN LISTS ARG_INCLUDES)
    get_filename_component(dir ${dir} ABSOLUTE)
    list(APPEND flags -I${dir})
  endforeach()
  if(AYAFLOW_MULTIARCH)
    list(APPEND flags -idirafter /usr/include/${AYAFLOW_MULTIARCH})
  endif()
  foreach(def IN LISTS ARG_DEFINES)
    list(APPEND flags -D${def})
  endforeach()
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${AYAFLOW_BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${AYAFLOW_BPF_ARCH}
            -Wall -Wno-unused-function ${flags} -MD -MF ${obj}.d
            -c ${source} -o ${obj}
    DEPENDS ${source} ${ARG_DEPENDS}
    DEPFILE ${obj}.d
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
