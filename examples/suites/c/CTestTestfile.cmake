# Read by ctest directly (no cmake configure step): one test per function of
# suite.c, built by `make examples` into dist/examples/suites/c/suite.
set(SUITE ${CMAKE_CURRENT_LIST_DIR}/../../../dist/examples/suites/c/suite)
add_test(ioas_alloc ${SUITE} ioas_alloc)
add_test(hw_info ${SUITE} hw_info)
add_test(errors_change_nothing ${SUITE} errors_change_nothing)
