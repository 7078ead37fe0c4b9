# frozen_string_literal: true

# The raw TCP echo bench/raw.rb serves with iodine: a raw listener (no HTTP) whose connections
# write back every chunk they read, one Ruby worker thread (`-t 1`). bench/raw_threads.rb is
# the same protocol with Ruby's own TCPServer and a thread per connection.
#
#   ruby -Ilib bench/raw_app.rb 3000

require "iodine"

# Each connection's callbacks: every chunk read is written back as is.
module EchoHandler
  def self.on_message(client, data)
    client.write(data)
  end
end

port = Integer(ARGV.fetch(0, "3000"))
Iodine.verbosity = 1
Iodine.threads = 1
Iodine.workers = 1
Iodine.listen(port: port, address: "127.0.0.1") { EchoHandler }
Iodine.start
