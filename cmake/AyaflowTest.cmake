# SPDX-License-Identifier: MIT OR Apache-2.0
# ayaflow_test(): the one way tests are declared.
#
#   ayaflow_test(<name> LABEL <unit|api|deploy|root>
#                SOURCES <file>...            # a GoogleTest binary, each test discovered
#              | COMMAND <command> <arg>...   # a script; exit 0 passes
#                [LIBS <target>...] [DEFINITIONS <def>...] [INCLUDES <dir>...]
#                [TIMEOUT <seconds>] [SERIAL] [AGENT] [SKIP_RETURN_CODE <code>]
#                [RESOURCE_LOCK <lock>...]
#                [FIXTURES_SETUP <fixture>...] [FIXTURES_REQUIRED <fixture>...])
#
# Tiers (labels): unit = no root, no network; api = the real HTTP server on loopback;
# deploy = manifests, image recipe, monitoring configuration; root = the kernel and network
# namespaces (skips without root outside CI, fails under CI=true).
# AGENT: the test runs the built agent (AYAFLOW_BINARY is its path). Every binary also gets
# AYAFLOW_SOURCE_DIR. SERIAL: never alongside another test (namespaces, many sockets).
# FIXTURES_SETUP / FIXTURES_REQUIRED: ctest fixtures (a test that makes something once, e.g.
# the container image, and the tests that need it; selecting the latter runs the former).
# Source files are listed explicitly: a renamed or missing file fails the configure step.
function(ayaflow_test name)
  cmake_parse_arguments(ARG "SERIAL;AGENT" "LABEL;TIMEOUT;SKIP_RETURN_CODE"
    "SOURCES;COMMAND;LIBS;DEFINITIONS;INCLUDES;RESOURCE_LOCK;FIXTURES_SETUP;FIXTURES_REQUIRED"
    ${ARGN})
  if(NOT ARG_LABEL MATCHES "^(unit|api|deploy|root)$")
    message(FATAL_ERROR "ayaflow_test(${name}): LABEL must be unit, api, deploy or root")
  endif()
  if(ARG_SOURCES AND ARG_COMMAND OR NOT ARG_SOURCES AND NOT ARG_COMMAND)
    message(FATAL_ERROR "ayaflow_test(${name}): give SOURCES or COMMAND")
  endif()
  set(props LABELS ${ARG_LABEL})
  if(ARG_TIMEOUT)
    list(APPEND props TIMEOUT ${ARG_TIMEOUT})
  endif()
  if(ARG_SERIAL)
    list(APPEND props RUN_SERIAL TRUE)
  endif()
  if(ARG_SKIP_RETURN_CODE)
    list(APPEND props SKIP_RETURN_CODE ${ARG_SKIP_RETURN_CODE})
  endif()
  if(ARG_RESOURCE_LOCK)
    list(APPEND props RESOURCE_LOCK "${ARG_RESOURCE_LOCK}")
  endif()
  foreach(kind SETUP REQUIRED)
    if(ARG_FIXTURES_${kind})
      list(APPEND props FIXTURES_${kind} "${ARG_FIXTURES_${kind}}")
    endif()
  endforeach()
  if(ARG_COMMAND)
    add_test(NAME ${name} COMMAND ${ARG_COMMAND})
    set_tests_properties(${name} PROPERTIES ${props})
    return()
  endif()
  foreach(src IN LISTS ARG_SOURCES)
    if(NOT IS_ABSOLUTE ${src})
      set(src ${CMAKE_CURRENT_SOURCE_DIR}/${src})
    endif()
    if(NOT EXISTS ${src})
      message(FATAL_ERROR "ayaflow_test(${name}): no such source ${src}")
    endif()
  endforeach()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest_main GTest::gmock
    Threads::Threads)
  target_include_directories(${name} PRIVATE ${ARG_INCLUDES})
  target_compile_definitions(${name} PRIVATE ${ARG_DEFINITIONS}
    AYAFLOW_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(ARG_AGENT)
    target_compile_definitions(${name} PRIVATE AYAFLOW_BINARY="$<TARGET_FILE:ayaflow>")
    add_dependencies(${name} ayaflow)
  endif()
  gtest_discover_tests(${name} PROPERTIES ${props} DISCOVERY_TIMEOUT 60)
endfunction()
