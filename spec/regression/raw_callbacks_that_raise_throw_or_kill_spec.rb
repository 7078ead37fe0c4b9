# frozen_string_literal: true

require "spec_helper"
require "socket"

# A raw listener whose factory or callbacks raise, throw or kill their thread: the connection
# is closed (or goes on), the server keeps answering, and the Ruby worker pool stays whole.
RSpec.describe "raw callbacks that raise, throw or kill their thread" do
  let(:raw_port) { ServerProcess.free_port }

  def script(http_port)
    <<~RUBY
      module Echo
        def self.on_message(client, data)
          case data
          when "raise" then raise "on_message raised"
          when "throw" then throw :nowhere
          when "kill" then Thread.current.kill
          else client.write(data)
          end
        end
      end
      factory = lambda do
        $factory_calls = ($factory_calls || 0) + 1
        raise "the factory raised" if $factory_calls == 1
        Echo
      end
      Iodine.threads = 2
      Iodine.workers = 1
      Iodine.listen(port: #{raw_port}, address: "127.0.0.1", handler: factory)
      Iodine.listen(service: :http, port: #{http_port}, address: "127.0.0.1") do |_env|
        [200, {}, ["\#{Iodine::Base.workers_alive}/2"]]
      end
      Iodine.start
    RUBY
  end

  def echo(text)
    socket = TCPSocket.new("127.0.0.1", raw_port)
    socket.write(text)
    socket.wait_readable(5) ? socket.readpartial(100) : nil
  rescue EOFError, Errno::ECONNRESET
    nil
  ensure
    socket&.close
  end

  def pool_whole?(port)
    20.times do
      return true if http_get(port, "/").body == "2/2"

      sleep 0.1
    end
    false
  end

  it "closes the connection whose factory raised, and serves the next ones" do
    port = ServerProcess.free_port
    server = ServerProcess.new(nil, script: ["-e", "require 'iodine'\n#{script(port)}"], port: port)
    expect(echo("first")).to be_nil # the factory raised: closed, nothing echoed
    expect(echo("second")).to eq("second")
    %w[raise throw kill].each do |bad|
      socket = TCPSocket.new("127.0.0.1", raw_port)
      socket.write(bad)
      sleep 0.2
      socket.write("after #{bad}")
      # The connection goes on (a raise or throw is logged, a killed thread replaced).
      expect(socket.wait_readable(5) && socket.readpartial(100)).to eq("after #{bad}")
      socket.close
      expect(echo("still #{bad}")).to eq("still #{bad}")
      expect(pool_whole?(port)).to be(true), "worker threads after #{bad}"
    end
    expect(server.log_with("the factory raised")).to include("the factory raised")
    expect(server.log_with("on_message raised")).to include("on_message raised")
  ensure
    expect(server&.stop&.exitstatus).to eq(0)
  end
end
