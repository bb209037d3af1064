//! burn's remote device (a WebSocket server of this process on loopback, flex behind it): a
//! pretrained model loads onto it with every tensor byte crossing the connection once —
//! counted by a proxy — and nothing coming back, and runs to the output of a local load.

use burn::prelude::*;
use burn_pretrain::PretrainExt;
use burn_pretrain_examples::{bundled_data, host_values, remote};
use burn_pretrain_models::ResNetConfig;
use burn_pretrain_tests::fixture;

#[test]
fn a_remote_device_receives_every_tensor_once() {
    let server = remote::serve(Device::flex()).unwrap();
    let proxy = remote::CountingProxy::start(&server).unwrap();
    let device = remote::connect(proxy.url()).unwrap();
    let config = ResNetConfig::resnet18().with_base_channels(8);
    let checkpoint = fixture("resnet/resnet18_narrow.pth");

    let before = (proxy.sent(), proxy.received());
    let net = config.init(&device).unwrap();
    let (net, report) = net.load_pretrained(&checkpoint).unwrap();
    device.sync().unwrap();
    let (sent, received) = (proxy.sent() - before.0, proxy.received() - before.1);
    assert_eq!(report.loaded().len(), 100);
    assert_eq!(net.conv1.weight.val().device(), device);
    let held = remote::held_bytes(&net);
    eprintln!("{sent} bytes sent for {held} bytes of tensors, {received} back");
    // Once: every byte, plus the operations' descriptions (about 150 bytes a tensor), never
    // a second copy; the random initialisation is never run (lazy parameters).
    assert!(sent >= held, "{sent} bytes sent, the model holds {held}");
    assert!(
        sent <= held + held / 20 + 64 * 1024,
        "{sent} bytes sent for {held} bytes of tensors: more than one copy"
    );
    // Nothing read back: the sync's answer only.
    assert!(received < 1024, "{received} bytes came back");

    let input = bundled_data("resnet/resnet18_narrow_io.safetensors", "input").unwrap();
    let ours = net.forward(Tensor::<4>::from_data(input.clone(), &device));
    let ours = host_values(ours.into_data()).unwrap();
    let local = Device::flex();
    let (local_net, _) = config
        .init(&local)
        .unwrap()
        .load_pretrained(&checkpoint)
        .unwrap();
    let theirs = host_values(
        local_net
            .forward(Tensor::<4>::from_data(input, &local))
            .into_data(),
    )
    .unwrap();
    assert_eq!(
        ours, theirs,
        "the remote model's output equals the local one's"
    );
}
