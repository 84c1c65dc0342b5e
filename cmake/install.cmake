# Install rules (SIGPROP_INSTALL): the public headers, libsigprop.so, a CMake package exporting
# sigprop::sigprop (find_package(sigprop)) and sigprop.pc (pkg-config); with SIGPROP_STATIC also
# libsigprop.a, sigprop::sigprop_static and sigprop-static.pc. Every third-party dependency is
# PRIVATE to the shared library, so sigprop::sigprop needs none at find_package time.
include(CMakePackageConfigHelpers)

set(SIGPROP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/sigprop CACHE STRING
    "Where sigpropConfig.cmake is installed, relative to the prefix")

install(TARGETS sigprop_lib EXPORT sigpropTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The CUDA plug-in (libsigprop_cuda.so, loaded with dlopen when backend "cuda" is asked for) goes
# to ${CMAKE_INSTALL_LIBDIR}/sigprop/, where the loader (mc/cuda_plugin.cpp) looks next to the library.
if(TARGET sigprop_cuda)
  install(TARGETS sigprop_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/sigprop COMPONENT runtime)
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sigprop DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT dev FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")
install(TARGETS sigprop RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

install(EXPORT sigpropTargets NAMESPACE sigprop:: FILE sigpropTargets.cmake
        DESTINATION ${SIGPROP_INSTALL_CMAKEDIR} COMPONENT dev)
# The exported target is named sigprop::sigprop, like the build tree's alias.
set_target_properties(sigprop_lib PROPERTIES EXPORT_NAME sigprop)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/sigpropConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/sigpropConfig.cmake
                              INSTALL_DESTINATION ${SIGPROP_INSTALL_CMAKEDIR})
# SIGPROP_STATIC: libsigprop.a as sigprop::sigprop_static, in its own export file, which the
# package config includes only where it is installed (it finds fmt and toml++ first: the
# archive's link dependencies), so sigprop::sigprop alone still needs no other package.
if(TARGET sigprop_static)
  install(TARGETS sigprop_static EXPORT sigpropStaticTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
  install(EXPORT sigpropStaticTargets NAMESPACE sigprop:: FILE sigpropStaticTargets.cmake
          DESTINATION ${SIGPROP_INSTALL_CMAKEDIR} COMPONENT dev)
endif()
# 0.x releases make no compatibility promise between minor versions.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sigpropConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sigpropConfig.cmake ${PROJECT_BINARY_DIR}/sigpropConfigVersion.cmake
        DESTINATION ${SIGPROP_INSTALL_CMAKEDIR} COMPONENT dev)

# pkg-config: relocatable (prefix found from the .pc file's own place, so `cmake --install
# --prefix P` works), unless the install dirs are absolute.
file(RELATIVE_PATH _sigprop_pc_up "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
set(SIGPROP_PC_PREFIX "\${pcfiledir}/${_sigprop_pc_up}")
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
    set(SIGPROP_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
  else()
    set(SIGPROP_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/sigprop.pc.in ${PROJECT_BINARY_DIR}/sigprop.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sigprop.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
if(TARGET sigprop_static)  # `pkg-config --libs sigprop-static`: libsigprop.a by path (-lsigprop finds the .so)
  set(SIGPROP_PC_DL "")
  foreach(_lib IN LISTS CMAKE_DL_LIBS)
    string(APPEND SIGPROP_PC_DL " -l${_lib}")
  endforeach()
  configure_file(${CMAKE_CURRENT_LIST_DIR}/sigprop-static.pc.in ${PROJECT_BINARY_DIR}/sigprop-static.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/sigprop-static.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
endif()
