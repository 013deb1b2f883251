fn main() {
    println!("kubesim: not yet implemented");
}
