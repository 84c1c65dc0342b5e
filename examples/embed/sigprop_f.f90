! Fortran 2003 interface (iso_c_binding) to part of sigprop's C ABI (include/sigprop/sigprop.h,
! docs/library.md "C ABI"): specs, theory and simulate, settings, profile values, errors.
! Handles are type(c_ptr); strings passed in must end in c_null_char (use f_c_string); text
! the library returns as const char* is copied out with c_f_string. Statuses are int32.
module sigprop_f
  use, intrinsic :: iso_c_binding
  implicit none
  private :: strlen

  ! SIGPROP_ABI_VERSION of sigprop.h (Fortran names ignore case: this one cannot be called that)
  integer(c_int32_t), parameter :: SIGPROP_F_ABI_VERSION = 1
  integer(c_int32_t), parameter :: SIGPROP_OK = 0, SIGPROP_E_CONFIG = 1, SIGPROP_E_IO = 2, &
                                   SIGPROP_E_NUMERICAL = 3, SIGPROP_E_CANCELLED = 4, SIGPROP_E_CUDA = 5, &
                                   SIGPROP_E_MEMORY = 6, SIGPROP_E_ARGUMENT = 7, SIGPROP_E_INTERNAL = 8

  interface
    function sigprop_abi_version() bind(C, name="sigprop_abi_version") result(v)
      import :: c_int32_t
      integer(c_int32_t) :: v
    end function
    function sigprop_version() bind(C, name="sigprop_version") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function
    function sigprop_last_error() bind(C, name="sigprop_last_error") result(p)
      import :: c_ptr
      type(c_ptr) :: p
    end function
    function sigprop_status_name(status) bind(C, name="sigprop_status_name") result(p)
      import :: c_ptr, c_int32_t
      integer(c_int32_t), value :: status
      type(c_ptr) :: p
    end function

    function sigprop_spec_default(out) bind(C, name="sigprop_spec_default") result(st)
      import :: c_ptr, c_int32_t
      type(c_ptr), intent(out) :: out
      integer(c_int32_t) :: st
    end function
    function sigprop_spec_from_file(path, out) bind(C, name="sigprop_spec_from_file") result(st)
      import :: c_ptr, c_int32_t, c_char
      character(kind=c_char), dimension(*), intent(in) :: path
      type(c_ptr), intent(out) :: out
      integer(c_int32_t) :: st
    end function
    function sigprop_spec_set(spec, assignment) bind(C, name="sigprop_spec_set") result(st)
      import :: c_ptr, c_int32_t, c_char
      type(c_ptr), value :: spec
      character(kind=c_char), dimension(*), intent(in) :: assignment
      integer(c_int32_t) :: st
    end function
    subroutine sigprop_spec_free(spec) bind(C, name="sigprop_spec_free")
      import :: c_ptr
      type(c_ptr), value :: spec
    end subroutine

    function sigprop_settings_new(engine, out) bind(C, name="sigprop_settings_new") result(st)
      import :: c_ptr, c_int32_t, c_char
      character(kind=c_char), dimension(*), intent(in) :: engine
      type(c_ptr), intent(out) :: out
      integer(c_int32_t) :: st
    end function
    function sigprop_settings_set(settings, key, val) bind(C, name="sigprop_settings_set") result(st)
      import :: c_ptr, c_int32_t, c_char
      type(c_ptr), value :: settings
      character(kind=c_char), dimension(*), intent(in) :: key, val
      integer(c_int32_t) :: st
    end function
    subroutine sigprop_settings_free(settings) bind(C, name="sigprop_settings_free")
      import :: c_ptr
      type(c_ptr), value :: settings
    end subroutine

    ! progress: c_funloc of a bind(C) function (user, fraction, stage) returning int32, or c_null_funptr.
    function sigprop_theory(spec, settings, progress, user, out) bind(C, name="sigprop_theory") result(st)
      import :: c_ptr, c_funptr, c_int32_t
      type(c_ptr), value :: spec, settings, user
      type(c_funptr), value :: progress
      type(c_ptr), intent(out) :: out
      integer(c_int32_t) :: st
    end function
    function sigprop_simulate(spec, settings, progress, user, out) bind(C, name="sigprop_simulate") result(st)
      import :: c_ptr, c_funptr, c_int32_t
      type(c_ptr), value :: spec, settings, user
      type(c_funptr), value :: progress
      type(c_ptr), intent(out) :: out
      integer(c_int32_t) :: st
    end function

    function sigprop_profile_rows(profile, n) bind(C, name="sigprop_profile_rows") result(st)
      import :: c_ptr, c_int32_t, c_int64_t
      type(c_ptr), value :: profile
      integer(c_int64_t), intent(out) :: n
      integer(c_int32_t) :: st
    end function
    ! buf holds cap doubles; n receives the row count (cap = 0: sizing call).
    function sigprop_profile_values(profile, name, buf, cap, n) bind(C, name="sigprop_profile_values") result(st)
      import :: c_ptr, c_int32_t, c_int64_t, c_char, c_double
      type(c_ptr), value :: profile
      character(kind=c_char), dimension(*), intent(in) :: name
      real(c_double), dimension(*), intent(inout) :: buf
      integer(c_int64_t), value :: cap
      integer(c_int64_t), intent(out) :: n
      integer(c_int32_t) :: st
    end function
    subroutine sigprop_profile_free(profile) bind(C, name="sigprop_profile_free")
      import :: c_ptr
      type(c_ptr), value :: profile
    end subroutine

    function strlen(s) bind(C, name="strlen") result(n)
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
      integer(c_size_t) :: n
    end function
  end interface

contains

  !> A Fortran string as a NUL-terminated C string (trailing blanks dropped).
  function f_c_string(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s)//c_null_char
  end function

  !> A copy of the NUL-terminated C string p (owned by the library) as a Fortran string.
  function c_f_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), dimension(:), pointer :: chars
    integer :: i, n
    n = int(strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function
end module sigprop_f
