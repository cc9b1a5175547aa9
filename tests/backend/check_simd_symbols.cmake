# Fails when an ISA-specific object file defines weak symbols (inline functions or template
# instantiations compiled with -mavx512f could be chosen by the linker for all callers).
foreach(obj IN LISTS OBJECTS)
  execute_process(COMMAND ${NM} --defined-only -C ${obj} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "nm failed on ${obj}")
  endif()
  string(REGEX MATCHALL "[^\n]* [WVu] [^\n]*" weak "${out}")
  # The exception-personality reference is data, the same in every object: harmless.
  list(FILTER weak EXCLUDE REGEX "DW\\.ref\\.__gxx_personality_v0")
  # So are type descriptions (clang's UBSan emits those of the function types it checks calls
  # through): data, not code built for the object's ISA.
  list(FILTER weak EXCLUDE REGEX " V typeinfo (name )?for ")
  if(weak)
    string(REPLACE ";" "\n" weak "${weak}")
    message(FATAL_ERROR "${obj} defines weak symbols:\n${weak}")
  endif()
endforeach()
message(STATUS "no weak symbols in the SIMD objects")
