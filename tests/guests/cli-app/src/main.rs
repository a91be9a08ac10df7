//! Not a provider: an ordinary `wasi:cli/run` program. Loading it as a provider must fail with an
//! error that names the missing export.

fn main() {
    println!("I am a command, not a secrets-store provider");
}
