fn main() {
    println!("gameserver: not yet implemented");
}
