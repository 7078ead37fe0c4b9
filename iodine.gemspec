# frozen_string_literal: true

require_relative "lib/iodine/version"

Gem::Specification.new do |spec|
  spec.name = "iodine"
  spec.version = Iodine::VERSION
  spec.authors = ["The iodine (Rust edition) developers"]
  spec.summary = "A fast, concurrent web server for real-time Ruby apps (HTTP/1.1, WebSocket, SSE, Pub/Sub), in Rust."
  spec.description = "iodine's API - Iodine.listen, Iodine.start, the iodine CLI and the Rack handler - " \
                     "served by a Rust engine (tokio + hyper) through a GVL-aware bridge."
  spec.license = "MIT"
  spec.homepage = "https://example.invalid/iodine"
  spec.required_ruby_version = ">= 2.7"

  spec.files = Dir[
    "lib/**/*.rb", "exe/*", "ext/iodine/extconf.rb", "ext/**/Cargo.toml", "ext/**/*.rs",
    "Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "README.md", "LICENSE", "examples/**/*"
  ].reject { |f| f.include?("/target/") }
  spec.bindir = "exe"
  spec.executables = ["iodine"]
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/iodine/extconf.rb"]

  spec.add_dependency "rack", ">= 2.0", "< 4"
end
