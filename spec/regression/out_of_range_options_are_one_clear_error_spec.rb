# frozen_string_literal: true

require "spec_helper"
require "open3"

# Huge durations and sizes used to reach Rust conversions that panicked (an unrescuable
# `fatal`) or raised "bignum too big" with a backtrace. Out-of-range values are now an
# ArgumentError from the API and one `Error:` line (exit 1) from the command line; so is a
# `-www` folder that isn't there.
RSpec.describe "out-of-range option values" do
  def ruby(code)
    Timeout.timeout(20) { Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", "require 'iodine'\n#{code}") }
  end

  it "are ArgumentErrors from Iodine.connect and Iodine.listen, and nothing is left half-made" do
    out, err, status = ruby(<<~RUBY)
      handler = Object.new
      port = #{ServerProcess.free_port}
      tries = {
        "connect timeout: 1e20" => -> { Iodine.connect(url: "ws://127.0.0.1:\#{port}/", handler: handler, timeout: 1e20) },
        "connect connect_timeout: Infinity" => -> { Iodine.connect(url: "ws://127.0.0.1:\#{port}/", handler: handler, connect_timeout: Float::INFINITY) },
        "connect ping: 1e20" => -> { Iodine.connect(url: "ws://127.0.0.1:\#{port}/", handler: handler, ping: 1e20) },
        "connect raw timeout: NaN" => -> { Iodine.connect(address: "127.0.0.1", port: port, handler: handler, timeout: Float::NAN) },
        "listen head_timeout: 1e20" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, head_timeout: 1e20) },
        "listen body_timeout: 10**30" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, body_timeout: 10**30) },
        "listen max_body: 10**30" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, max_body: 10**30) },
        "listen max_clients: 10**30" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, max_clients: 10**30) },
        "listen max_msg: Infinity" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, max_msg: Float::INFINITY) },
        "listen public: missing" => -> { Iodine.listen(service: :http, port: port, handler: ->(_) {}, public: "/no/such/folder") }
      }
      tries.each do |name, call|
        call.call
        puts "\#{name}: accepted"
      rescue ArgumentError => e
        puts "\#{name}: ArgumentError"
      rescue Exception => e
        puts "\#{name}: \#{e.class}: \#{e.message}"
      end
      puts "pending listeners: \#{Iodine::Base.pending_listeners.size}"
    RUBY
    expect(status.success?).to be(true), err
    lines = out.lines.map(&:chomp)
    expect(lines.grep(/: /).reject { |l| l.end_with?(": ArgumentError") || l.start_with?("pending") }).to eq([])
    expect(lines.size).to eq(11)
    expect(lines.last).to eq("pending listeners: 0")
  end

  it "are one Error: line and exit 1 from the command line" do
    ["-htout 100000000000000000000", "-btout 99999999", "-maxbd 99999999999999999999999",
     "-maxcl 99999999999999999999", "-maxms 99999999999", "-maxhd 99999999999", "-www /no/such/folder"].each do |flags|
      out, err, status = Timeout.timeout(20) do
        Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE, "-p", ServerProcess.free_port.to_s,
                       *flags.split, app_path("hello.ru"))
      end
      expect(status.exitstatus).to eq(1), "#{flags}: #{out}#{err}"
      expect(err.lines.first).to start_with("Error: "), "#{flags}: #{err}"
      expect(err).not_to match(/\.rb:\d+:in|panicked|fatal/), "#{flags}: #{err}"
    end
  end
end
