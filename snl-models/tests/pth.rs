//! Zip `torch.save` files built opcode by opcode: views of a storage read like PyTorch's,
//! and a pickle or zip directory that lies is a `PthError`, never a panic or an aborted
//! allocation (candle's reader, used before, panicked on a short `_rebuild_tensor_v2`
//! tuple and allocated whatever size the pickle declared).

use std::io::Write;
use std::path::{Path, PathBuf};

use candle::Device;
use snl_models::checkpoint;
use snl_models::{Error, PthError};

/// Pickle opcodes, as `torch.save` writes them (protocol 2).
fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}

fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn int(v: u32) -> Vec<u8> {
    let mut out = vec![b'J'];
    out.extend((v as i32).to_le_bytes());
    out
}

fn tuple(items: &[u32]) -> Vec<u8> {
    let mut v = vec![b'('];
    items.iter().for_each(|&i| v.extend(int(i)));
    v.push(b't');
    v
}

/// `_rebuild_tensor_v2` with the arguments `args` (already pickled, without the mark).
fn rebuild(args: &[u8]) -> Vec<u8> {
    [global("torch._utils", "_rebuild_tensor_v2"), vec![b'('], args.to_vec(), vec![b't', b'R']].concat()
}

/// A float storage `key` of `numel` values, as a persistent id.
fn storage(key: &str, numel: u32) -> Vec<u8> {
    [
        vec![b'('],
        unicode("storage"),
        global("torch", "FloatStorage"),
        unicode(key),
        unicode("cpu"),
        int(numel),
        vec![b't', b'Q'],
    ]
    .concat()
}

/// `storage, offset, size, stride, False, OrderedDict()`.
fn view(storage_id: &[u8], offset: u32, size: &[u32], stride: &[u32]) -> Vec<u8> {
    [
        storage_id.to_vec(),
        int(offset),
        tuple(size),
        tuple(stride),
        vec![0x89],
        global("collections", "OrderedDict"),
        vec![b')', b'R'],
    ]
    .concat()
}

/// `{name: tensor, ...}` as a whole pickle.
fn state_dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    for (name, tensor) in entries {
        p.extend(unicode(name));
        p.extend(tensor);
    }
    p.extend([b'u', b'.']);
    p
}

/// A zip holding `archive/data.pkl` and `archive/data/<key>` for each of `storages`.
fn pth(dir: &Path, pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join("model.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn pth_error(path: &Path) -> PthError {
    match checkpoint::read(path, &Device::Cpu) {
        Err(Error::Pth { source, .. }) => source,
        other => panic!("expected a .pth error, got {other:?}"),
    }
}

#[test]
fn views_of_a_storage_read_as_pytorch_lays_them_out() {
    let tmp = tempfile::tempdir().unwrap();
    let s = storage("0", 6);
    let pickle = state_dict(&[
        ("whole", rebuild(&view(&s, 0, &[2, 3], &[3, 1]))),
        ("transposed", rebuild(&view(&s, 0, &[3, 2], &[1, 3]))),
        ("slice", rebuild(&view(&s, 2, &[3], &[1]))),
        ("module.every_other", rebuild(&view(&s, 1, &[3], &[2]))),
    ]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0., 1., 2., 3., 4., 5.]))]);
    let ck = checkpoint::read(&path, &Device::Cpu).unwrap();
    let t = |name: &str| ck.tensors[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(t("whole"), [0., 1., 2., 3., 4., 5.]);
    assert_eq!(ck.tensors["transposed"].dims(), [3, 2]);
    assert_eq!(t("transposed"), [0., 3., 1., 4., 2., 5.]);
    assert_eq!(t("slice"), [2., 3., 4.]);
    assert_eq!(t("every_other"), [1., 3., 5.], "the `module.` prefix is stripped");
}

#[test]
fn a_short_rebuild_tuple_is_an_error_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let pickle = state_dict(&[("conv.weight", rebuild(&[storage("0", 1), int(0)].concat()))]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[1.0]))]);
    let err = pth_error(&path);
    assert!(matches!(err, PthError::Tensor { ref name, .. } if name == "conv.weight"), "{err}");
    assert!(err.to_string().contains("2 arguments to _rebuild_tensor_v2"), "{err}");
}

#[test]
fn sizes_the_file_cannot_hold_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    // A 10^10-value view of a 6-value storage.
    let pickle =
        state_dict(&[("w", rebuild(&view(&storage("0", 6), 0, &[100_000, 100_000], &[100_000, 1])))]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0.0; 6]))]);
    let err = pth_error(&path);
    assert!(err.to_string().contains("a view of 10000000000 values of a storage of 6"), "{err}");
    // Many whole views of one storage the file could hold: more out than it holds.
    let whole = rebuild(&view(&storage("0", 100_000), 0, &[100_000], &[1]));
    let names: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let pickle = state_dict(&names.iter().map(|n| (n.as_str(), whole.clone())).collect::<Vec<_>>());
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0.0; 6]))]);
    let err = pth_error(&path);
    assert!(err.to_string().contains("bytes, more than") && err.to_string().contains("(a file of"), "{err}");
    // Even with no stride the view may not reach past its storage.
    let pickle = state_dict(&[("w", rebuild(&view(&storage("0", 6), 5, &[2], &[1])))]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0.0; 6]))]);
    assert!(pth_error(&path).to_string().contains("reaches past the 6 values of storage 0"));
    // A storage that declares 2^31 - 1 values: more than the file could hold.
    let pickle = state_dict(&[("w", rebuild(&view(&storage("0", 0x7fff_ffff), 0, &[1], &[1])))]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0.0; 6]))]);
    let err = pth_error(&path);
    assert!(matches!(err, PthError::Tensor { ref name, .. } if name == "w"), "{err}");
    assert!(err.to_string().contains("need 8589934588 bytes, more than"), "{err}");
    // One that declares 1000, with 6 in its member.
    let pickle = state_dict(&[("w", rebuild(&view(&storage("0", 1000), 0, &[1], &[1])))]);
    let path = pth(tmp.path(), &pickle, &[("0", floats(&[0.0; 6]))]);
    let err = pth_error(&path);
    assert!(matches!(err, PthError::Member { ref member, .. } if member == "archive/data/0"), "{err}");
    assert!(err.to_string().contains("4000 bytes wanted, but it declares 24 bytes"), "{err}");
    // A string longer than the pickle.
    let path = pth(tmp.path(), &[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff, b'.'], &[]);
    assert!(matches!(pth_error(&path), PthError::Pickle { at: 2, .. }));
}

#[test]
fn shared_and_nested_objects_cost_no_more_than_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    // Each step pairs the previous object with itself: 2^60 leaves if memo lookups copied.
    let mut laughs = vec![0x80, 2, b'N', b'q', 0];
    for _ in 0..60 {
        laughs.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    laughs.push(b'.');
    let path = pth(tmp.path(), &laughs, &[]);
    assert!(matches!(pth_error(&path), PthError::Pickle { .. } | PthError::NoStateDict));
    // A million nested tuples would overflow the stack when dropped.
    let mut deep = vec![0x80, 2, b'N'];
    deep.extend(std::iter::repeat_n(0x85, 1_000_000));
    deep.push(b'.');
    let path = pth(tmp.path(), &deep, &[]);
    assert!(pth_error(&path).to_string().contains("nested more than 64 deep"));
    // Millions of empty lists, one byte each, kept on the stack: gigabytes of objects from a
    // few megabytes (a 64 MB pickle took 5-6 GB and aborted), refused once past the cap.
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', 3_000_000));
    lists.push(b'.');
    let path = pth(tmp.path(), &lists, &[]);
    let err = pth_error(&path).to_string();
    assert!(err.contains("more than 1048576 objects"), "{err}");
    // And as many memo entries of one object.
    let mut memo = vec![0x80, 2, b']'];
    for id in 0..1_100_000u32 {
        memo.push(b'r');
        memo.extend(id.to_le_bytes());
    }
    memo.push(b'.');
    let path = pth(tmp.path(), &memo, &[]);
    let err = pth_error(&path).to_string();
    assert!(err.contains("more than 1048576 objects"), "{err}");
    // A BUILD merges a whole dict for 4 bytes: 2,400 merges of 2,000 entries from 14 kB.
    let mut build = vec![0x80, 2, b'}', b'('];
    build.extend([b'N', b'N'].repeat(2000));
    build.extend([b'u', b'q', 0]);
    for _ in 0..2400 {
        build.extend([b'}', b'h', 0, b'b']);
    }
    build.push(b'.');
    let path = pth(tmp.path(), &build, &[]);
    let err = pth_error(&path).to_string();
    assert!(err.contains("more than 4194304 entries added to or copied"), "{err}");
    // A memoised name of a megabyte, copied by each use.
    let mut names = vec![0x80, 2];
    names.extend(unicode(&"m".repeat(1 << 20)));
    names.extend([b'q', 0]);
    for _ in 0..3 {
        names.extend([b'h', 0, b'h', 0, 0x93]);
    }
    names.push(b'.');
    let path = pth(tmp.path(), &names, &[]);
    let err = pth_error(&path).to_string();
    assert!(err.contains("module or class name over 1024 bytes"), "{err}");
}

/// Members sharing one compressed stream would inflate it once per name.
#[test]
fn members_that_share_their_data_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default();
    zip.start_file("archive/data.pkl", deflated).unwrap();
    zip.write_all(&state_dict(&[])).unwrap();
    zip.start_file("archive/data/0", deflated).unwrap();
    zip.write_all(&[0u8; 1 << 16]).unwrap();
    for i in 1..4 {
        zip.shallow_copy_file("archive/data/0", &format!("archive/data/{i}")).unwrap();
    }
    zip.finish().unwrap();
    let err = pth_error(&path).to_string();
    assert!(err.contains("members share compressed data"), "{err}");
}
