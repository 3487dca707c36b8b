//! The PyTorch float32 oracle (fixtures/make_torch_fixture.py): logits, loss, every gradient,
//! one Adam step and two SGD-with-momentum steps, within 1e-5 (normwise relative).

use safetensors::SafeTensors;
use serde_json::Value;
use tinycnn::optim::OptimizerState;
use tinycnn::train::{logits, loss_and_gradient};
use tinycnn::{Activation, Arch, Data, Model, Optimizer, Scaling};

const FIXTURE: &[u8] = include_bytes!("fixtures/torch_fixture.safetensors");

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture lacks {name}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64))
        / scale
}

#[test]
fn matches_pytorch_float32() {
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    let (_, meta) = SafeTensors::read_metadata(FIXTURE).unwrap();
    let cases: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
    let cases = cases.as_object().unwrap();
    assert_eq!(cases.len(), 3);
    for (name, c) in cases {
        let us = |k: &str| c[k].as_u64().unwrap() as usize;
        let arch = Arch {
            height: us("height"),
            width: us("width"),
            filters: c["filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
            kernel: us("kernel"),
            activation: serde_json::from_value::<Activation>(c["activation"].clone()).unwrap(),
            pool: c["pool"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect(),
            classes: us("classes"),
        };
        let scaling = if c["scaling"] == "raw" {
            Scaling::Raw
        } else {
            Scaling::Unit
        };
        let images = st
            .tensor(&format!("{name}/images"))
            .unwrap()
            .data()
            .to_vec();
        let labels = st
            .tensor(&format!("{name}/labels"))
            .unwrap()
            .data()
            .to_vec();
        // Parameters in tinycnn's layout, from the PyTorch names.
        let probe = Model::init(&arch, tinycnn::Init::Glorot, 0).unwrap();
        let gather = |prefix: &str| -> Vec<f32> {
            probe
                .tensors()
                .iter()
                .flat_map(|(t, _, _)| f32s(&st, &format!("{name}/{prefix}/{t}")))
                .collect()
        };
        let model = Model::from_params(&arch, gather("param")).unwrap();
        let data = Data {
            images: &images,
            labels: &labels,
            height: arch.height,
            width: arch.width,
        };

        let got = logits(&model, &data, scaling);
        let e = rel_err(&got, &f32s(&st, &format!("{name}/logits")));
        assert!(e < 1e-5, "{name}: logits differ by {e:e}");

        let (loss, grad) = loss_and_gradient(&model, &images, &labels, scaling);
        let want_loss = f32s(&st, &format!("{name}/loss"))[0] as f64;
        assert!(
            (loss - want_loss).abs() < 1e-5 * want_loss.abs(),
            "{name}: loss {loss} vs {want_loss}"
        );
        for (t, _, r) in model.tensors() {
            let e = rel_err(&grad[r.clone()], &f32s(&st, &format!("{name}/grad/{t}")));
            assert!(e < 1e-5, "{name}: gradient of {t} differs by {e:e}");
        }

        let a = &c["adam"];
        let adam = Optimizer::Adam {
            lr: a["lr"].as_f64().unwrap(),
            beta1: a["beta1"].as_f64().unwrap(),
            beta2: a["beta2"].as_f64().unwrap(),
            eps: a["eps"].as_f64().unwrap(),
        };
        let mut stepped = model.params.clone();
        OptimizerState::new(adam, stepped.len()).update(&mut stepped, &grad);
        let want = gather("adam1");
        for (t, _, r) in model.tensors() {
            let e = rel_err(&stepped[r.clone()], &want[r.clone()]);
            assert!(e < 1e-5, "{name}: {t} after one Adam step differs by {e:e}");
            let ours: Vec<f32> = stepped[r.clone()]
                .iter()
                .zip(&model.params[r.clone()])
                .map(|(a, b)| a - b)
                .collect();
            let theirs: Vec<f32> = want[r.clone()]
                .iter()
                .zip(&model.params[r.clone()])
                .map(|(a, b)| a - b)
                .collect();
            let e = rel_err(&ours, &theirs);
            // The update is a difference of f32 weights: rounding of w alone allows ~2e-5.
            assert!(
                e < 1e-4,
                "{name}: the Adam update of {t} itself differs by {e:e}"
            );
        }

        let s = &c["sgd"];
        let sgd = Optimizer::sgd(s["lr"].as_f64().unwrap(), s["momentum"].as_f64().unwrap());
        let mut state = OptimizerState::new(sgd, model.params.len());
        let mut m = model.clone();
        for _ in 0..2 {
            let (_, g) = loss_and_gradient(&m, &images, &labels, scaling);
            state.update(&mut m.params, &g);
        }
        let e = rel_err(&m.params, &gather("sgd2"));
        assert!(e < 1e-5, "{name}: two SGD momentum steps differ by {e:e}");
    }
}
