! Embedding sigprop from Fortran through its C ABI (module sigprop_f, sigprop_f.f90): the same as
! depth_profile.c. Read a spec file, apply overrides, run the infinite-width theory, print
! grad_var and rho per layer.
!
!   depth_profile_f SPEC.toml [table.key=value ...]
!
! Build against an installed prefix (tests/embed/embed_test.sh does):
!   gfortran sigprop_f.f90 depth_profile.f90 $(pkg-config --libs sigprop) -o depth_profile_f
! The progress callback lives in a module: an internal procedure passed with c_funloc would need
! a trampoline (an executable stack).
module depth_profile_progress
  use, intrinsic :: iso_c_binding
  implicit none
contains
  function count_calls(user, fraction, stage) bind(C) result(go_on)
    type(c_ptr), value :: user
    real(c_double), value :: fraction
    character(kind=c_char), dimension(*), intent(in) :: stage
    integer(c_int32_t) :: go_on
    integer, pointer :: counter
    call c_f_pointer(user, counter)
    counter = counter + 1
    go_on = 1  ! 0 would cancel: SIGPROP_E_CANCELLED
  end function
end module depth_profile_progress

program depth_profile_f
  use, intrinsic :: iso_c_binding
  use sigprop_f
  use depth_profile_progress
  implicit none
  type(c_ptr) :: spec = c_null_ptr, profile = c_null_ptr
  integer(c_int32_t) :: st
  integer(c_int64_t) :: rows, n
  integer, target :: calls = 0
  real(c_double) :: dummy(1)
  real(c_double), allocatable :: grad_var(:), rho(:)
  character(len=4096) :: arg
  integer :: i

  if (command_argument_count() < 1) then
    write (*, '(a)') 'usage: depth_profile_f SPEC.toml [table.key=value ...]'
    stop 2
  end if
  if (sigprop_abi_version() /= SIGPROP_F_ABI_VERSION) stop 'the library has another C ABI version'

  call get_command_argument(1, arg)
  st = sigprop_spec_from_file(f_c_string(arg), spec)
  if (st /= SIGPROP_OK) call fail(trim(arg), st)
  do i = 2, command_argument_count()
    call get_command_argument(i, arg)
    st = sigprop_spec_set(spec, f_c_string(arg))
    if (st /= SIGPROP_OK) call fail(trim(arg), st)
  end do

  ! No settings (the engine's defaults); a Fortran progress callback counting its calls.
  st = sigprop_theory(spec, c_null_ptr, c_funloc(count_calls), c_loc(calls), profile)
  if (st /= SIGPROP_OK) call fail('theory', st)
  st = sigprop_profile_values(profile, f_c_string('grad_var'), dummy, 0_c_int64_t, rows)  ! sizing call
  if (st /= SIGPROP_OK) call fail('grad_var', st)
  allocate (grad_var(rows), rho(rows))
  st = sigprop_profile_values(profile, f_c_string('grad_var'), grad_var, rows, n)
  if (st /= SIGPROP_OK) call fail('grad_var', st)
  st = sigprop_profile_values(profile, f_c_string('rho'), rho, rows, n)
  if (st /= SIGPROP_OK) call fail('rho', st)

  write (*, '(a,a,a,i0,a,i0,a)') '# sigprop ', c_f_string(sigprop_version()), ' (Fortran), ', rows - 1, &
    ' layers, ', calls, ' progress calls'
  write (*, '(a)') 'layer grad_var rho'
  do i = 1, int(rows)
    write (*, '(i0,1x,es25.17e3,1x,es25.17e3)') i - 1, grad_var(i), rho(i)
  end do
  call sigprop_profile_free(profile)
  call sigprop_spec_free(spec)

contains

  subroutine fail(what, status)
    character(len=*), intent(in) :: what
    integer(c_int32_t), intent(in) :: status
    write (0, '(a)') 'depth_profile_f: '//what//': '//c_f_string(sigprop_status_name(status))//': '// &
      c_f_string(sigprop_last_error())
    call sigprop_spec_free(spec)
    stop 1
  end subroutine
end program depth_profile_f
