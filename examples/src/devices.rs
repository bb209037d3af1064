//! The devices of every backend compiled in, named: `flex` (default), `ndarray`, `wgpu`
//! (a GPU through Vulkan/Metal/DX12, or Mesa's lavapipe on a CPU), `tch` (libtorch).

use burn::prelude::*;

/// Every device this build can use, flex first.
#[allow(clippy::vec_init_then_push)]
pub fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(feature = "flex")]
    out.push(("flex", Device::flex()));
    #[cfg(feature = "ndarray")]
    out.push(("ndarray", Device::ndarray()));
    #[cfg(feature = "wgpu")]
    out.push((
        "wgpu",
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    ));
    // burn 0.22 deprecates its libtorch backend; it is still the way to a libtorch device.
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    out.push(("tch", Device::libtorch()));
    out
}

/// The device named `name`, if its backend is compiled in.
pub fn device(name: &str) -> Option<Device> {
    devices()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d)
}
