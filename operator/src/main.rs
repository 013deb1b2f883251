fn main() {
    println!("gamefleet-operator: not yet implemented");
}
