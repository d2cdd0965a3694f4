//! `snl_core::fast::tune_allocator` applies on Linux/glibc and leaves allocation working.

#[test]
fn tunes_glibc_and_allocation_still_works() {
    let applied = snl_core::fast::tune_allocator();
    assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
    // Large buffers allocate, fill and free as before, repeatedly.
    for i in 0..4 {
        let v = vec![i as f32; 8 << 20];
        assert_eq!(v[v.len() - 1], i as f32);
    }
}
