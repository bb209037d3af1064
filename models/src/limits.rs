//! What a config may ask for: the memory its parameters need, checked against the machine
//! before anything is allocated (parameters are lazy, so an oversized model would otherwise
//! pass `check` and abort `load` on its first multi-gigabyte allocation).

/// Bytes of one parameter value (f32, the default float dtype; a conservative bound).
const BYTES_PER_VALUE: u128 = 4;

/// The memory this machine has, in bytes: `MemTotal` of `/proc/meminfo` (Linux), else unknown.
pub fn machine_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What one parameter tensor costs besides its values, before it is initialised: burn's lazy
/// `Param` (its id, init closure, shape, locks) and the module structs around it — measured at
/// 886 bytes a tensor (resident set) in a lazy ViT of 20,000 blocks; counted with room to spare, so a config of
/// a million tiny blocks is refused instead of aborting while it is built.
const BYTES_PER_TENSOR: u128 = 2048;

/// `None` (an overflow while counting) or more values than this machine can hold in memory:
/// the message says how many bytes they would need.
pub(crate) fn check_values(values: Option<u128>) -> Result<(), String> {
    check_model(values, Some(0))
}

/// [`check_values`] with the cost of `tensors` parameter tensors added (see
/// [`BYTES_PER_TENSOR`]).
pub(crate) fn check_model(values: Option<u128>, tensors: Option<u128>) -> Result<(), String> {
    let (Some(values), Some(tensors)) = (values, tensors) else {
        return Err("the parameters would need more than 2^128 bytes (the count overflows)".into());
    };
    let bytes = values
        .saturating_mul(BYTES_PER_VALUE)
        .saturating_add(tensors.saturating_mul(BYTES_PER_TENSOR));
    match machine_memory() {
        Some(memory) if bytes > memory => Err(format!(
            "the parameters would need {} ({values} values in {tensors} tensors), more than this machine's {} of memory",
            show_bytes(bytes),
            show_bytes(memory)
        )),
        _ => Ok(()),
    }
}

/// A forward pass over one input whose activations need `values` f32 values at once (`None`:
/// the count overflows) must fit in this machine's memory; `what` says where they are.
pub(crate) fn check_forward(values: Option<u128>, what: &str) -> Result<(), String> {
    let Some(values) = values else {
        return Err(format!(
            "a forward pass over one image would need more than 2^128 bytes ({what})"
        ));
    };
    let bytes = values.saturating_mul(BYTES_PER_VALUE);
    match machine_memory() {
        Some(memory) if bytes > memory => Err(format!(
            "a forward pass over one image would need {} ({what}), more than this machine's {} of memory",
            show_bytes(bytes),
            show_bytes(memory)
        )),
        _ => Ok(()),
    }
}

/// `a + b + ...` without overflow (`None` in, or an overflow: `None`).
pub(crate) fn sum(terms: &[Option<u128>]) -> Option<u128> {
    terms.iter().try_fold(0u128, |a, v| a.checked_add((*v)?))
}

/// `1.5 GiB`.
pub(crate) fn show_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `a * b * ...` without overflow.
pub(crate) fn product(factors: &[usize]) -> Option<u128> {
    factors
        .iter()
        .try_fold(1u128, |acc, &f| acc.checked_mul(f as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(show_bytes(512), "512 B");
        assert_eq!(show_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn overflow_and_oversize_are_errors() {
        assert!(check_values(None).unwrap_err().contains("overflows"));
        if machine_memory().is_some() {
            let err = check_values(Some(u128::MAX / 8)).unwrap_err();
            assert!(err.contains("more than this machine's"), "{err}");
        }
        assert!(check_values(Some(1000)).is_ok());
    }
}
