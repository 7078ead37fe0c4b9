# frozen_string_literal: true

# The smallest Rack app: `bin/serve` serves it, `rake bench` measures it.
#   iodine -p 3000 examples/hello.ru

run ->(_env) { [200, { "Content-Type" => "text/plain", "Content-Length" => "12" }, ["Hello World!"]] }
