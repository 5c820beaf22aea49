//! Batched augmentation against a naive per-image reference.
use gfa_data::SeededRng;
use gfa_data::augment::{AugmentDraw, apply_draw};
use gfa_data::{AugmentConfig, synthetic};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

/// Pads one `[C, H, W]` image (row-major `Vec`) with `p` zeros, crops at `(dy, dx)`, then
/// mirrors left–right when `flip`: the torchvision RandomCrop + HorizontalFlip steps, one image
/// at a time.
fn naive(
    img: &[f32],
    [c, h, w]: [usize; 3],
    p: usize,
    (dy, dx, flip): (usize, usize, bool),
) -> Vec<f32> {
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let mut padded = vec![0f32; c * hp * wp];
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                padded[(ch * hp + i + p) * wp + j + p] = img[(ch * h + i) * w + j];
            }
        }
    }
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let v = padded[(ch * hp + dy + i) * wp + dx + j];
                let jj = if flip { w - 1 - j } else { j };
                out[(ch * h + i) * w + jj] = v;
            }
        }
    }
    out
}

#[test]
fn crop_and_flip_match_the_per_image_reference() {
    let (n, c, h, w, p) = (6usize, 2usize, 5usize, 7usize, 3i64);
    let x =
        Tensor::rand([n as i64, c as i64, h as i64, w as i64], (Kind::Float, Device::Cpu)) + 0.5;
    let cfg = AugmentConfig { crop_padding: p, flip: true };
    let mut rng = SeededRng::seed_from_u64(11);
    let draw = cfg.draw(n, &mut rng);
    // The draw must exercise both extremes and both flip outcomes for the check to mean much;
    // add them explicitly on top of the random draw.
    let draw = AugmentDraw {
        dy: [vec![0, 2 * p], draw.dy[2..].to_vec()].concat(),
        dx: [vec![2 * p, 0], draw.dx[2..].to_vec()].concat(),
        flip: [vec![true, false], draw.flip[2..].to_vec()].concat(),
    };
    let y = apply_draw(&x, p, &draw).unwrap();
    assert_eq!(y.size(), x.size());
    let xs = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
    let ys = Vec::<f32>::try_from(&y.flatten(0, -1)).unwrap();
    let per = c * h * w;
    for s in 0..n {
        let choice = (draw.dy[s] as usize, draw.dx[s] as usize, draw.flip[s]);
        let want = naive(&xs[s * per..(s + 1) * per], [c, h, w], p as usize, choice);
        assert_eq!(&ys[s * per..(s + 1) * per], want.as_slice(), "sample {s}");
    }
}

#[test]
fn apply_is_seeded_and_matches_its_draw() {
    let x = synthetic(16, 0, 1).train.images.to_kind(Kind::Float) / 255.0;
    let cfg = AugmentConfig::default();
    let a = cfg.apply(&x, &mut SeededRng::seed_from_u64(9)).unwrap();
    let b = cfg.apply(&x, &mut SeededRng::seed_from_u64(9)).unwrap();
    let c = cfg.apply(&x, &mut SeededRng::seed_from_u64(10)).unwrap();
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
    let draw = cfg.draw(16, &mut SeededRng::seed_from_u64(9));
    assert!(a.equal(&apply_draw(&x, 4, &draw).unwrap()));
}

#[test]
fn shape_kind_and_range_are_preserved() {
    let xu8 = synthetic(32, 0, 2).train.images;
    let x = xu8.to_kind(Kind::Float) / 255.0;
    let y = AugmentConfig::default().apply(&x, &mut SeededRng::seed_from_u64(0)).unwrap();
    assert_eq!(y.size(), [32, 3, 32, 32]);
    assert_eq!(y.kind(), Kind::Float);
    assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
    // Works on the u8 storage too, with the same choices giving the same pixels.
    let yu8 = AugmentConfig::default().apply(&xu8, &mut SeededRng::seed_from_u64(0)).unwrap();
    assert_eq!(yu8.kind(), Kind::Uint8);
    assert!(y.equal(&(yu8.to_kind(Kind::Float) / 255.0)));
}

#[test]
fn flip_alone_is_an_exact_mirror() {
    let x = synthetic(64, 0, 3).train.images.to_kind(Kind::Float) / 255.0;
    let cfg = AugmentConfig { crop_padding: 0, flip: true };
    let draw = cfg.draw(64, &mut SeededRng::seed_from_u64(4));
    let y = cfg.apply(&x, &mut SeededRng::seed_from_u64(4)).unwrap();
    let mirrored = x.flip([3]);
    let mut flipped = 0;
    for (s, &f) in draw.flip.iter().enumerate() {
        let want = if f { mirrored.get(s as i64) } else { x.get(s as i64) };
        assert!(y.get(s as i64).equal(&want), "sample {s} (flip = {f})");
        flipped += f as usize;
    }
    assert!(flipped > 0 && flipped < 64);
}

#[test]
fn identity_config_returns_the_input() {
    let x = synthetic(4, 0, 5).train.images;
    let y = AugmentConfig::none().apply(&x, &mut SeededRng::seed_from_u64(0)).unwrap();
    assert!(y.equal(&x));
    // Padding without flip only shifts: every output pixel is an input pixel or zero padding.
    let cfg = AugmentConfig { crop_padding: 4, flip: false };
    let draw = cfg.draw(4, &mut SeededRng::seed_from_u64(1));
    assert!(draw.flip.iter().all(|f| !f));
    let z = apply_draw(&x, 4, &draw).unwrap();
    for s in 0..4 {
        let (dy, dx) = (draw.dy[s] - 4, draw.dx[s] - 4);
        // The 24×24 centre of the output is the input shifted by (dy, dx).
        let out = z.get(s as i64).narrow(1, 4, 24).narrow(2, 4, 24);
        let src = x.get(s as i64).narrow(1, 4 + dy, 24).narrow(2, 4 + dx, 24);
        assert!(out.equal(&src), "sample {s}");
    }
}

#[test]
fn toml_config_round_trips_and_rejects_typos() {
    let c: AugmentConfig = toml::from_str("crop_padding = 2\nflip = false\n").unwrap();
    assert_eq!(c, AugmentConfig { crop_padding: 2, flip: false });
    assert_eq!(toml::from_str::<AugmentConfig>(&toml::to_string(&c).unwrap()).unwrap(), c);
    assert_eq!(toml::from_str::<AugmentConfig>("").unwrap(), AugmentConfig::default());
    let err = toml::from_str::<AugmentConfig>("flips = true").unwrap_err().to_string();
    assert!(err.contains("flips"), "{err}");
}
