# frozen_string_literal: true

require "spec_helper"

RSpec.describe "Iodine::Mustache keeps the dynamic Symbols it creates for lookups alive across GC" do
  # Renders `{{#rows}}{{qq_row_label}}={{qq_row_score}};{{/rows}}` over `rows` String-keyed
  # rows (from JSON, so the key Symbols exist only because the renderer creates them) in a
  # child Ruby; `stress` turns GC.stress on for the render. Returns [status, output].
  def render_in_child(rows, stress:, timeout: 30)
    script = <<~RUBY
      require "iodine"
      require "json"
      n = #{Integer(rows)}
      data = JSON.parse(JSON.generate("rows" => Array.new(n) { |i| { "qq_row_label" => "r\#{i}", "qq_row_score" => i } }))
      view = Iodine::Mustache.new(template: "{{#rows}}{{qq_row_label}}={{qq_row_score}};{{/rows}}")
      GC.stress = #{stress ? 'true' : 'false'}
      out = view.render(data)
      GC.stress = false
      expected = Array.new(n) { |i| "r\#{i}=\#{i};" }.join
      puts(out == expected ? "rendered \#{out.bytesize} bytes as expected" : "WRONG OUTPUT: \#{out[0, 200].inspect}")
    RUBY
    reader, writer = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I#{ROOT}/lib", "-e", script, out: writer, err: writer, in: File::NULL)
    writer.close
    collector = Thread.new { reader.read }
    deadline = Time.now + timeout
    status = nil
    until (status = Process.wait2(pid, Process::WNOHANG)&.last)
      if Time.now > deadline
        Process.kill("KILL", pid)
        status = Process.wait2(pid).last
        break
      end
      sleep 0.02
    end
    [status, collector.value]
  ensure
    reader&.close
  end

  def expected_size(rows)
    Array.new(rows) { |i| "r#{i}=#{i};" }.join.bytesize
  end

  it "renders 100_000 String-keyed rows correctly with the ordinary GC running" do
    status, output = render_in_child(100_000, stress: false)
    expect(output).to include("rendered #{expected_size(100_000)} bytes as expected"), output[0, 2000]
    expect(status.success?).to be(true), "child ended with #{status.inspect}:\n#{output[0, 2000]}"
  end

  it "renders String-keyed rows correctly under GC.stress" do
    status, output = render_in_child(100, stress: true)
    expect(output).to include("rendered #{expected_size(100)} bytes as expected"), output[0, 2000]
    expect(status.success?).to be(true), "child ended with #{status.inspect}:\n#{output[0, 2000]}"
  end
end
